"""The bundled broker speaks Kafka well enough for aiokafka, consumer groups included,
and stops at once however its clients left it."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from preservarium_tools.embedded.broker import EmbeddedBroker
from preservarium_tools.embedded.ports import Port, ensure_free

from tests.support.net import free_port


async def test_produce_then_consume_in_a_group(broker: EmbeddedBroker) -> None:
    topic = f"t-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"hello", key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id=f"g-{topic}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=2000,  # the broker forms a group in half a session
    )
    await consumer.start()
    try:
        record = await consumer.getone()
        await consumer.commit()
    finally:
        await consumer.stop()
    assert (record.key, record.value) == (b"k", b"hello")


async def test_a_broker_holding_a_join_stops_within_its_grace() -> None:
    """Tansu's graceful stop waits for a JoinGroup until its group forms (5 s with
    aiokafka's default session), even when the joining client has gone."""
    broker = EmbeddedBroker(port=free_port())
    await broker.start()
    consumer = AIOKafkaConsumer("joined", bootstrap_servers=broker.bootstrap, group_id="g")
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait("joined", b"x")
    finally:
        await producer.stop()
    joining = asyncio.create_task(consumer.start())  # returns once the group formed
    try:
        await asyncio.sleep(0.5)
        assert not joining.done()
        clock = asyncio.get_running_loop()
        started = clock.time()
        await broker.stop()
        assert clock.time() - started < 3.0  # the join would hold a graceful stop 4.5 s
        ensure_free([Port(broker.host, broker.port)])
    finally:
        joining.cancel()
        await asyncio.wait([joining])
        with contextlib.suppress(Exception):
            await asyncio.wait_for(consumer.stop(), 5)
        await broker.stop()
