"""One pass of a replay over its raw records: select, parse at a bounded rate, publish
(or compare, in a dry run), checkpoint. One batch at a time: the batch's results are
all acknowledged by the broker before its positions are stored."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from preservarium.contract.encoding import encode
from preservarium.contract.uplinks import RawUplink, read_raw
from preservarium.replay import outcomes, topics
from preservarium.replay.errors import KAFKA_UNAVAILABLE, ReplayError
from preservarium.replay.originals import OriginalIndex
from preservarium.replay.outcomes import Answer, Verdict
from preservarium.replay.pace import Pace
from preservarium.replay.runners import Runner
from preservarium.replay.uplinks import Original
from preservarium.replay.window import Window
from preservarium.repositories.replays import ReplayRecord, Span

log = logging.getLogger("preservarium.replay")
FROM_RAW, FROM_FAILED = "raw", "failed"
Positions = dict[int, Span]
Outgoing = list[tuple[str, bytes, bytes | None]]
MAX_BATCH = 200


class Checkpoints(Protocol):
    """Where a stored replay's progress goes (the run's lease on it, `lease.ReplayLease`)."""

    async def fence(self) -> None:
        """Raise unless results may still be published (the replay is still held)."""

    async def checkpoint(self, replay: ReplayRecord) -> None:
        """Store how far the replay got."""


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a replay got: raw records read of those to read, and what it did."""

    replay_id: str
    done: int
    total: int
    counts: dict[str, int]


@dataclass(frozen=True, slots=True)
class Targets:
    """Where results go: the parsed and failed topics."""

    parsed: str
    failed: str


@dataclass(slots=True)
class Chosen:
    """A raw uplink the replay runs, with what was published for it at the time."""

    uplink: RawUplink
    original: Original | None


def batch_size(rate: int) -> int:
    """About a quarter of a second of uplinks per batch: checkpoints stay frequent."""
    return max(1, min(MAX_BATCH, rate // 4))


class ReplayPass:
    """Runs the raw records of `replay.positions` through `runner`."""

    def __init__(
        self,
        replay: ReplayRecord,
        *,
        runner: Runner,
        originals: OriginalIndex,
        pace: Pace,
        producer: AIOKafkaProducer | None,
        targets: Targets,
        repository: Checkpoints | None,
        attributes: Mapping[str, str] | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        on_verdict: Callable[[Verdict], None] | None = None,
    ) -> None:
        self.replay = replay
        self.counts: Counter[str] = Counter(replay.counts)
        self._runner = runner
        self._originals = originals
        self._pace = pace
        self._producer = producer
        self._targets = targets
        self._repository = repository
        # Device id -> its attributes as compact JSON (only devices that have some).
        self._attributes = attributes or {}
        self._on_progress = on_progress or (lambda progress: None)
        self._on_verdict = on_verdict or (lambda verdict: None)
        self._window = Window(replay.since, replay.until)

    @property
    def dry_run(self) -> bool:
        """True when nothing is published."""
        return self._producer is None

    def progress(self) -> Progress:
        """Records read so far of those to read."""
        spans = self.replay.positions.values()
        done = sum(s.next - s.start for s in spans)
        total = sum(s.end - s.start for s in spans)
        return Progress(self.replay.id, done, total, dict(self.counts))

    async def run(self, reader: AIOKafkaConsumer, raw_topic: str) -> ReplayRecord:
        """Every batch, to the end of the spans; the replay as it ends."""
        self._on_progress(self.progress())
        size = batch_size(self._pace.ceiling)
        async for batch in topics.read(reader, raw_topic, self.replay.positions, batch=size):
            chosen = [c for c in map(self._choose, batch) if c is not None]
            await self._pace.take(len(chosen))
            started = time.monotonic()
            answers = await asyncio.gather(*(self._answer(c) for c in chosen))
            waited = max((answer.live_waited for answer in answers), default=0)
            self._pace.observe(len(chosen), time.monotonic() - started, live_waited=waited)
            if self._repository is not None:
                await self._repository.fence()  # another runner may have taken it over
            await self._deliver(chosen, answers)
            self.replay = self.replay.moved(_moved(self.replay.positions, batch), dict(self.counts))
            if self._repository is not None:
                await self._repository.checkpoint(self.replay)
            self._on_progress(self.progress())
        self.replay = self.replay.moved(self.replay.positions, dict(self.counts))
        return self.replay

    def _choose(self, item: ConsumerRecord[bytes, bytes]) -> Chosen | None:
        self.counts["scanned"] += 1
        if not self._window.holds(item.timestamp):
            return None
        uplink = read_raw(item.value)
        if uplink is None:
            self.counts["unreadable"] += 1
            return None
        if uplink.recorded.device_type != self.replay.device_type:
            return None
        original = self._originals.outcomes.get(uplink.id)
        if self.replay.source == FROM_FAILED and (original is None or original.ok):
            return None
        device = uplink.recorded.device_id or (None if original is None else original.device_id)
        if self.replay.device_id is not None and device != self.replay.device_id:
            return None
        self.counts["matched"] += 1
        published = self._originals.published
        # A route contact is replayed only when the gateway delivered it at the time: its
        # identity was checked then (the raw record keeps no credential to check again).
        unverified = uplink.routed and (original is None or original.refused)
        if uplink.id in published or unverified:
            self.counts["skipped"] += 1
            return None
        published.add(uplink.id)
        return Chosen(uplink, original)

    async def _answer(self, chosen: Chosen) -> Answer:
        uplink, original = chosen.uplink, chosen.original
        # The device the contact was delivered as: parsers see its attributes, as live.
        device = uplink.recorded.device_id or (None if original is None else original.device_id)
        attributes = self._attributes.get(device, "") if device is not None else ""
        answer = await self._runner.run(uplink.contact(attributes), identify=uplink.routed)
        if not uplink.routed or original is None or answer.device_id is None:
            return answer
        if answer.device_id != original.device_id:
            return replace(outcomes.refused(
                answer.device_id,
                f"identify() now names {answer.device_id!r}, the gateway delivered this "
                f"contact as {original.device_id!r}: not delivered",
            ), live_waited=answer.live_waited)  # fmt: skip
        return answer

    async def _deliver(self, chosen: list[Chosen], answers: list[Answer]) -> None:
        outgoing: Outgoing = []
        for item, answer in zip(chosen, answers, strict=True):
            record = outcomes.record(
                item.uplink, answer, replay_id=self.replay.id, parser=self._runner.parser
            )
            self.counts["replayed"] += 1
            self.counts["parsed" if answer.ok else "failed"] += 1
            if self._producer is None:
                found = outcomes.verdict(item.uplink, item.original, record)
                self.counts[found.outcome] += 1
                self._on_verdict(found)
                continue
            topic = self._targets.parsed if answer.ok else self._targets.failed
            key = None if answer.device_id is None else answer.device_id.encode()
            outgoing.append((topic, encode(record), key))
        if self._producer is not None and outgoing:
            await _publish(self._producer, outgoing)


async def _publish(
    producer: AIOKafkaProducer, outgoing: list[tuple[str, bytes, bytes | None]]
) -> None:
    """Send every record, then wait until the broker acknowledged all of them."""
    try:
        sent = [await producer.send(topic, value, key=key) for topic, value, key in outgoing]
        await asyncio.gather(*sent)
    except KafkaError as exc:
        raise ReplayError(f"publishing failed: {exc}", kind=KAFKA_UNAVAILABLE) from exc


def _moved(
    positions: dict[int, Span], batch: list[ConsumerRecord[bytes, bytes]]
) -> dict[int, Span]:
    """The positions once `batch` is handled: past its last record in each partition."""
    moved = dict(positions)
    for item in batch:
        span = moved[item.partition]
        if item.offset >= span.next:
            moved[item.partition] = Span(span.start, item.offset + 1, span.end)
    return moved
