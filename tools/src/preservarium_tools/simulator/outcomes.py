"""Following `uplink.parsed` and `uplink.failed` to learn what became of each contact.

aiokafka is the sdk's optional `kafka` extra, so it is imported only when the feed
starts; without it (or without a reachable broker) the simulator runs and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any, Literal

from preservarium.contract.encoding import Record, decode_record
from preservarium.errors import PreservariumError
from preservarium.lifecycle import AsyncLifecycle
from preservarium.logs import quiet_aiokafka

Topic = Literal["parsed", "failed"]
CONNECT_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 2.0


class FeedUnavailableError(PreservariumError):
    """The parsed and failed topics cannot be followed (no aiokafka, no broker)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """The record a contact produced, and on which topic."""

    topic: Topic
    record: Record


@dataclass(frozen=True, slots=True)
class Expectation:
    """How to recognise the record of one contact.

    A parsed record carries no payload: it is recognised by its device, the kind of
    message its data holds and, for measurements, the newest sample's time. A failed
    record carries the payload, which is matched exactly.
    """

    device_id: str | None
    message: str
    payload_b64: str
    newest_timestamp: int | None = None

    def matches(self, topic: Topic, record: Record) -> bool:
        """True when `record` on `topic` is this contact's."""
        if topic == "failed":
            return record.get("payload_b64") == self.payload_b64 and self._same_device(record)
        data = record.get("data")
        if not isinstance(data, dict) or data.get("message") != self.message:
            return False
        return self._same_device(record) and self._same_time(data)

    def _same_device(self, record: Record) -> bool:
        return self.device_id is None or record.get("device_id") == self.device_id

    def _same_time(self, data: Record) -> bool:
        if self.newest_timestamp is None:
            return True
        samples = data.get("measurements")
        times = [s.get("timestamp") for s in samples or () if isinstance(s, dict)]
        ints = [t for t in times if isinstance(t, int)]
        return bool(ints) and max(ints) == self.newest_timestamp


class OutcomeFeed(AsyncLifecycle):
    """Follows the parsed and failed topics from now on; hands records to their contacts."""

    def __init__(self, *, bootstrap: str, parsed_topic: str, failed_topic: str) -> None:
        self.bootstrap = bootstrap
        self._topics: dict[str, Topic] = {parsed_topic: "parsed", failed_topic: "failed"}
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None
        self._waiting: list[tuple[Expectation, asyncio.Future[Outcome]]] = []
        self._failure: BaseException | None = None

    async def start(self) -> None:
        """Attach at the current end of both topics (FeedUnavailableError if impossible)."""
        try:
            from aiokafka import AIOKafkaConsumer
            from aiokafka.errors import KafkaError
        except ImportError:
            raise FeedUnavailableError(
                "aiokafka is not installed (pip install 'preservarium-sdk[kafka]')"
            ) from None
        quiet_aiokafka()
        self._consumer = AIOKafkaConsumer(
            *self._topics,
            bootstrap_servers=self.bootstrap,
            client_id="preservarium-simulate",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
        )
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await self._consumer.start()
                # Resolve every position now, so "the end" is now and not the first fetch.
                for partition in self._consumer.assignment():
                    await self._consumer.position(partition)
        except (KafkaError, OSError, TimeoutError) as exc:
            await self.stop()
            reason = "no answer in time" if isinstance(exc, TimeoutError) else str(exc)
            raise FeedUnavailableError(f"cannot reach Kafka at {self.bootstrap}: {reason}") from exc
        self._task = asyncio.create_task(self._run(), name="outcome-feed")

    def expect(self, expectation: Expectation) -> asyncio.Future[Outcome]:
        """A future for the record of a contact about to be sent."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        if self._failure is not None:
            future.set_exception(FeedUnavailableError(f"Kafka: {self._failure}"))
        else:
            self._waiting.append((expectation, future))
        return future

    async def stop(self) -> None:
        """Stop following; idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), STOP_TIMEOUT_S)
        for _, future in self._waiting:
            future.cancel()
        self._waiting.clear()

    async def _run(self) -> None:
        try:
            while True:
                batches = await self._consumer.getmany(timeout_ms=200)
                for partition, records in batches.items():
                    for message in records:
                        self._dispatch(self._topics[partition.topic], message.value)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(exc)

    def _dispatch(self, topic: Topic, value: bytes | None) -> None:
        record = decode_record(value)
        if record is None:
            return
        self._waiting = [(e, f) for e, f in self._waiting if not f.done()]
        for expectation, future in self._waiting:
            if expectation.matches(topic, record):
                future.set_result(Outcome(topic, record))
                return

    def _fail(self, exc: BaseException) -> None:
        self._failure = exc
        for _, future in self._waiting:
            if not future.done():
                future.set_exception(FeedUnavailableError(f"Kafka: {exc}"))
        self._waiting.clear()
