"""Records published without waiting (`publish_later`): all of them reach the topic, in
order, each acknowledgement or failure observed once; a broker out of reach loses none
silently; drain() returns once every record is settled."""

from __future__ import annotations

import asyncio
import json

from preservarium_gateway.kafka import KafkaPublisher
from preservarium_tools.embedded.broker import EmbeddedBroker

from tests.support.kafka import TopicReader, prefix


class Observed:
    """The publisher's observer: (topic, ok) per settled record."""

    def __init__(self) -> None:
        self.settled: list[tuple[str, bool]] = []

    def __call__(self, topic: str, seconds: float, ok: bool) -> None:
        assert seconds >= 0
        self.settled.append((topic, ok))


async def test_records_published_later_all_arrive_in_order(broker: EmbeddedBroker) -> None:
    topic = f"{prefix()}later"
    observed = Observed()
    publisher = KafkaPublisher(broker.bootstrap, timeout_s=5.0, on_publish=observed,
                               topics=(topic,))  # fmt: skip
    reader = TopicReader(broker.bootstrap, topic)
    await reader.start()
    try:
        async with publisher:
            for n in range(200):
                publisher.publish_later(topic, json.dumps({"n": n}).encode(), b"device-1")
            await publisher.drain()
            assert observed.settled == [(topic, True)] * 200
        found = await reader.wait_for(lambda value: True, count=200)
        assert [value["n"] for value in found] == list(range(200))
        assert {key for key, _ in reader.records} == {b"device-1"}
    finally:
        await reader.stop()


async def test_a_broker_out_of_reach_fails_each_record_once_and_drain_returns() -> None:
    observed = Observed()
    publisher = KafkaPublisher("127.0.0.1:9", timeout_s=0.2, on_publish=observed)
    await publisher.start()
    try:
        for _ in range(5):
            publisher.publish_later("nowhere", b"{}", None)
        await asyncio.wait_for(publisher.drain(), 5)
        assert observed.settled == [("nowhere", False)] * 5
    finally:
        await publisher.stop()


async def test_records_published_before_start_are_failed_by_drain() -> None:
    observed = Observed()
    publisher = KafkaPublisher("127.0.0.1:9", timeout_s=0.2, on_publish=observed)
    publisher.publish_later("nowhere", b"{}", None)
    await asyncio.wait_for(publisher.drain(), 5)
    assert observed.settled == [("nowhere", False)]
    await publisher.stop()  # idempotent, nothing left
