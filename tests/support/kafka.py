"""Reading and writing topics of the test broker."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from preservarium_gateway.kafka import ensure_topics


class TopicReader:
    """Follows one topic from its beginning and keeps every record, decoded."""

    def __init__(self, bootstrap: str, topic: str, *, from_end: bool = False) -> None:
        self._from_end = from_end
        self.topic = topic
        self.records: list[tuple[bytes | None, dict[str, Any]]] = []
        self._consumer_bootstrap = bootstrap
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
            auto_offset_reset="earliest", metadata_max_age_ms=500,
        )  # fmt: skip
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        await ensure_topics(self._consumer_bootstrap, (self.topic,), partitions=3)
        await self._consumer._client.force_metadata_update()
        partitions = self._consumer.partitions_for_topic(self.topic) or {0}
        self._consumer.assign([TopicPartition(self.topic, p) for p in partitions])
        if self._from_end:
            await self._consumer.seek_to_end()
            for partition in self._consumer.assignment():  # resolve the positions now
                await self._consumer.position(partition)
        else:
            await self._consumer.seek_to_beginning()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=100)
            for batch in batches.values():
                for record in batch:
                    self.records.append((record.key, json.loads(record.value)))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    def values(self) -> list[dict[str, Any]]:
        return [value for _, value in self.records]

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], *, count: int = 1, timeout_s: float = 10
    ) -> list[dict[str, Any]]:
        """Wait until `count` records match; return the matches."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            matches = [value for value in self.values() if predicate(value)]
            if len(matches) >= count:
                return matches
            if loop.time() > deadline:
                raise AssertionError(
                    f"{len(matches)}/{count} matching records on {self.topic}: {self.values()[-5:]}"
                )
            await asyncio.sleep(0.05)


async def produce(bootstrap: str, topic: str, value: bytes, key: bytes | None = None) -> None:
    """Write one record."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


def prefix() -> str:
    """A topic prefix of its own for one test."""
    return f"t{uuid.uuid4().hex[:8]}."
