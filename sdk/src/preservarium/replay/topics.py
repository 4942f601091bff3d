"""Finding and reading the records of a time window in a topic.

Offsets for a time come from the broker's ListOffsets-by-timestamp (aiokafka's
`offsets_for_times`) when its answer can be trusted: a real Kafka answers with the first
record at or after the time and that record's timestamp. A broker that answers without
one (Tansu, the embedded default, says offset 0 with timestamp -1) is not trusted: the
window is then found by a scan from the partition's first offset, every record outside
the window skipped. Either way records are filtered by timestamp as they are read.

Where a partition ends is the larger of ListOffsets-latest and the high watermark a
fetch reports: Tansu answers ListOffsets with the number of record batches written, not
of records (ten records sent in one batch: "1"), while its fetch answers are right.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, OffsetAndTimestamp, TopicPartition

from preservarium.contract.topics import PARTITIONS
from preservarium.replay.errors import KAFKA_UNAVAILABLE, ReplayError
from preservarium.repositories.replays import Span

log = logging.getLogger("preservarium.replay.topics")
# No record for this long while offsets are left to read: the broker is not answering.
STALL_S = 30.0
# How long to wait for the fetches that tell each partition's high watermark.
WATERMARK_WAIT_S = 10.0


def trusted_offset(answer: OffsetAndTimestamp | None, target_ms: int, end: int) -> int | None:
    """The offset of the first record at or after `target_ms`, when the broker's answer
    says so; None when the answer cannot be trusted (then scan)."""
    if answer is None:  # no record at or after the time: the window starts past the end
        return end
    if answer.timestamp is not None and answer.timestamp >= target_ms:
        return int(answer.offset)
    return None


def consumer(bootstrap: str) -> AIOKafkaConsumer:
    """A consumer with no group: it commits nothing and takes records from no one."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
        auto_offset_reset="earliest", client_id="preservarium-replay",
    )  # fmt: skip


async def partitions(reader: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """Every partition of `topic` (none when it does not exist). Asked of a consumer not
    yet assigned: an assigned one keeps metadata of its assignment only."""
    if topic not in await reader.topics():
        return []
    return [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]


async def spans(
    reader: AIOKafkaConsumer, topic: str, since_ms: int, until_ms: int | None
) -> tuple[dict[int, Span], bool]:
    """Per partition, where the records of [since, until] start and where to stop (the
    end of the partition now when `until_ms` is None); and whether the broker's offsets
    for times were trusted (False: a scan from the first offset)."""
    parts = await partitions(reader, topic)
    if not parts:
        return {}, True
    first = await reader.beginning_offsets(parts)
    last = await _ends(reader, parts, first, await reader.end_offsets(parts))
    starts = await reader.offsets_for_times({tp: since_ms for tp in parts})
    stops: dict[TopicPartition, Any] = {}
    if until_ms is not None:
        stops = await reader.offsets_for_times({tp: until_ms + 1 for tp in parts})
    found: dict[int, Span] = {}
    trusted = True
    for tp in parts:
        start = trusted_offset(starts.get(tp), since_ms, last[tp])
        stop = (
            last[tp] if until_ms is None else trusted_offset(stops.get(tp), until_ms + 1, last[tp])
        )
        trusted = trusted and start is not None and stop is not None
        begin = first[tp] if start is None else start
        found[tp.partition] = Span(begin, begin, max(begin, last[tp] if stop is None else stop))
    if not trusted:
        log.info("offsets by time not answered: scanning", extra={"topic": topic})
    return found, trusted


async def _ends(
    reader: AIOKafkaConsumer,
    parts: list[TopicPartition],
    first: dict[TopicPartition, int],
    listed: dict[TopicPartition, int],
) -> dict[TopicPartition, int]:
    """Each partition's end: ListOffsets-latest, or the high watermark of a fetch there
    when it is larger (see the module's note)."""
    reader.assign(parts)
    for tp in parts:
        reader.seek(tp, max(first[tp], listed[tp] - 1))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WATERMARK_WAIT_S
    while any(reader.highwater(tp) is None for tp in parts) and loop.time() < deadline:
        await reader.getmany(*parts, timeout_ms=200, max_records=1)
    ends = {}
    for tp in parts:
        watermark = reader.highwater(tp)
        ends[tp] = max(listed[tp], watermark or 0)
    return ends


async def read(
    reader: AIOKafkaConsumer, topic: str, positions: dict[int, Span], *, batch: int
) -> AsyncGenerator[list[ConsumerRecord[bytes, bytes]], None]:
    """The records from each partition's `next` offset up to its `end`, at most `batch`
    per step. ReplayError (kafka_unavailable) when the broker stops answering."""
    left = {TopicPartition(topic, p): s for p, s in positions.items() if not s.done}
    if not left:
        return
    reader.assign(list(left))
    for tp, span in left.items():
        reader.seek(tp, span.next)
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    while left:
        got = await reader.getmany(*left, timeout_ms=500, max_records=batch)
        records: list[ConsumerRecord[bytes, bytes]] = []
        for tp, items in got.items():
            records += [item for item in items if item.offset < left[tp].end]
            if items and items[-1].offset + 1 >= left[tp].end:
                reader.pause(tp)
                del left[tp]
        for tp in list(left):  # a partition whose remaining offsets hold no record
            if await reader.position(tp) >= left[tp].end:
                del left[tp]
        if records:
            quiet_since = loop.time()
            yield records
        elif loop.time() - quiet_since > STALL_S:
            raise ReplayError(f"no record from {topic} for {STALL_S:.0f} s", kind=KAFKA_UNAVAILABLE)


async def ensure(bootstrap: str, names: tuple[str, ...]) -> None:
    """Create the topics of `names` that do not exist yet."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="preservarium-replay")
    await admin.start()
    try:
        missing = [name for name in names if name not in set(await admin.list_topics())]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in missing])
    finally:
        await admin.close()
