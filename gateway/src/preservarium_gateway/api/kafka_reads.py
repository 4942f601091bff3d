"""Reading topics for the API: a tail from the end (for streams), and the newest records
of a topic (for /uplinks). Each reader is its own consumer without a group: it commits
nothing and takes nothing from the gateways' consumers."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition
from preservarium.contract.topics import PARTITIONS

from preservarium_gateway.errors import PublishError
from preservarium_gateway.kafka import ensure_topics

STOP_TIMEOUT_S = 2.0


class KafkaReadError(PublishError):
    """Kafka could not be read in time (a 503 to the client)."""


@dataclass(frozen=True, slots=True)
class TopicRecord:
    """One decoded record and where it is."""

    partition: int
    offset: int
    timestamp_ms: int
    value: dict[str, Any]

    @property
    def event_id(self) -> str:
        """`partition:offset`: names the record."""
        return f"{self.partition}:{self.offset}"


def _decode(raw: bytes | None) -> dict[str, Any] | None:
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


@asynccontextmanager
async def assigned(bootstrap: str, topic: str, *, timeout_s: float) -> AsyncIterator[
    tuple[AIOKafkaConsumer, list[TopicPartition]]
]:  # fmt: skip
    """A group-less consumer with every partition of `topic` assigned; stopped on exit."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, client_id="preservarium-api")  # fmt: skip
    try:
        async with asyncio.timeout(timeout_s):
            await consumer.start()
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                await ensure_topics(bootstrap, (topic,), partitions=PARTITIONS)
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(topic) or {0}
        assignment = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assignment)
    except (KafkaError, OSError, TimeoutError) as exc:
        await _stop(consumer)
        raise KafkaReadError(f"cannot read {topic} from Kafka at {bootstrap}: {exc!r}") from exc
    try:
        yield consumer, assignment
    finally:
        await _stop(consumer)


async def _stop(consumer: AIOKafkaConsumer) -> None:
    with contextlib.suppress(KafkaError, OSError, TimeoutError):
        await asyncio.wait_for(consumer.stop(), STOP_TIMEOUT_S)


class TopicTail:
    """Records written to a topic from now on; `start()` returns once the position is the
    end, so nothing produced after it is missed."""

    def __init__(self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> None:
        self._consumer = consumer
        self._partitions = partitions

    async def start(self) -> None:
        """Move to the end of every partition, resolved now."""
        await self._consumer.seek_to_end(*self._partitions)
        for partition in self._partitions:
            await self._consumer.position(partition)

    async def poll(self, *, timeout_s: float, max_records: int) -> list[TopicRecord]:
        """What arrived, waiting at most `timeout_s`; at most `max_records`."""
        batches = await self._consumer.getmany(timeout_ms=int(timeout_s * 1000),
                                               max_records=max_records)  # fmt: skip
        found: list[TopicRecord] = []
        for partition, records in batches.items():
            for record in records:
                value = _decode(record.value)
                if value is not None:
                    found.append(TopicRecord(partition.partition, record.offset,
                                             record.timestamp, value))  # fmt: skip
        return found


async def newest(
    bootstrap: str,
    topic: str,
    *,
    keep: Callable[[dict[str, Any]], bool],
    count: int,
    scan: int,
    timeout_s: float,
) -> list[TopicRecord]:
    """Up to `count` of the newest records that `keep` accepts, newest first, among the
    last `scan` records of each partition."""
    async with assigned(bootstrap, topic, timeout_s=timeout_s) as (consumer, partitions):
        try:
            async with asyncio.timeout(timeout_s):
                return await _newest(consumer, partitions, keep=keep, count=count, scan=scan)
        except (KafkaError, OSError, TimeoutError) as exc:
            raise KafkaReadError(f"cannot read {topic}: {exc!r}") from exc


async def _newest(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], *,
    keep: Callable[[dict[str, Any]], bool], count: int, scan: int,
) -> list[TopicRecord]:  # fmt: skip
    ends = await consumer.end_offsets(partitions)
    starts = await consumer.beginning_offsets(partitions)
    wanted: dict[TopicPartition, int] = {}
    for partition in partitions:
        first = max(starts[partition], ends[partition] - scan)
        if first < ends[partition]:
            consumer.seek(partition, first)
            wanted[partition] = ends[partition]
    found: list[TopicRecord] = []
    while wanted:
        batches = await consumer.getmany(*wanted, timeout_ms=500)
        for partition, records in batches.items():
            for record in records:
                value = _decode(record.value)
                if value is not None and keep(value):
                    found.append(TopicRecord(partition.partition, record.offset,
                                             record.timestamp, value))  # fmt: skip
            if records and records[-1].offset + 1 >= wanted.get(partition, 0):
                wanted.pop(partition, None)
    found.sort(key=lambda r: (r.timestamp_ms, r.partition, r.offset), reverse=True)
    return found[:count]
