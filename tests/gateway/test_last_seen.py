"""Last seen: contacts of devices (credentials or not) become their last contact within a
flush; flushes are batched, keep the newest time, survive a failure, and end with stop."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from preservarium.db.engine import make_engine
from preservarium.db.models import Base
from preservarium.identity import SecretBox
from preservarium.repositories import SQLDeviceActivityRepository, SQLDeviceRepository
from preservarium.supervisor import Supervisor
from preservarium.usecases.devices import show_device
from preservarium_gateway.last_seen import LastSeenRecorder
from preservarium_gateway.metrics import GatewayMetrics
from preservarium_gateway.server import GatewayServer
from preservarium_gateway.types import Clock
from preservarium_sandbox.server import SandboxServer
from preservarium_tools import coapwire as cw
from preservarium_tools.coapwire import CoapClient
from preservarium_tools.embedded.broker import EmbeddedBroker
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.gateway.conftest import gateway_config
from tests.gateway.parsers import THERMO
from tests.sandbox.conftest import sandbox_config
from tests.support.clock import SteppedClock
from tests.support.kafka import prefix
from tests.support.parsers import install_parsers

SERIAL = bytes.fromhex("282c0242")
READING = SERIAL + struct.pack(">h", 215)


async def _last_contact(engine: AsyncEngine, device_id: str) -> datetime | None:
    return (await show_device(engine, SecretBox(()), device_id)).last_contact_at


async def _wait_contact(engine: AsyncEngine, device_id: str, timeout_s: float = 15.0) -> datetime:
    """The device's last contact, once a flush has written it."""
    async with asyncio.timeout(timeout_s):
        while (at := await _last_contact(engine, device_id)) is None:  # noqa: ASYNC110 (a database row)
            await asyncio.sleep(0.05)
    return at


@pytest.fixture
async def lastseen_gateway(
    database_url: str, broker: EmbeddedBroker
) -> AsyncIterator[GatewayServer]:
    async with SandboxServer(sandbox_config(database_url)) as sandbox:
        devices = [("dev-1", "thermo"), (SERIAL.hex(), "thermo")]
        await install_parsers(database_url, sandbox, {"thermo": THERMO}, devices=devices)
        config = gateway_config(
            database_url=database_url, bootstrap=broker.bootstrap,
            sandbox_addr=sandbox.config.listen, topic_prefix=prefix(), last_seen_flush_s=0.2,
        )  # fmt: skip
        async with GatewayServer(config) as server:
            yield server


async def test_a_device_without_credentials_shows_its_contact_within_a_flush(
    lastseen_gateway: GatewayServer,
) -> None:
    gateway = lastseen_gateway
    engine = make_engine(gateway.config.database_url)
    try:
        assert await _last_contact(engine, "dev-1") is None
        revision = await SQLDeviceRepository(engine).revision()
        async with CoapClient("127.0.0.1", gateway.config.bind.port, timeout_s=5) as coap:
            assert (await coap.call(cw.POST, "/d/dev-1", READING)).dotted_code == "2.01"
            assert (await coap.call(cw.POST, "/m", READING)).dotted_code == "2.01"
        before = await _wait_contact(engine, "dev-1")  # a /d/ device, no credentials
        await _wait_contact(engine, SERIAL.hex())  # a route device, by the id identify() gave
        async with CoapClient("127.0.0.1", gateway.config.bind.port, timeout_s=5) as coap:
            assert (await coap.call(cw.POST, "/d/dev-1", READING)).dotted_code == "2.01"
        async with asyncio.timeout(15):
            while (await _wait_contact(engine, "dev-1")) <= before:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert (
            _sample(gateway.metrics, "preservarium_gateway_last_seen_flushes_total", result="ok")
            >= 2
        )
        # Contacts do not move the registry revision: no gateway reloads for them.
        assert await SQLDeviceRepository(engine).revision() == revision
    finally:
        await engine.dispose()


def _sample(metrics: GatewayMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def _recorder(
    engine: AsyncEngine, metrics: GatewayMetrics, clock: Clock = time.time, **limits: int
) -> LastSeenRecorder:
    return LastSeenRecorder(
        store=SQLDeviceActivityRepository(engine), flush_s=3600.0,
        max_entries=limits.get("max_entries", 1000), metrics=metrics, supervisor=Supervisor(),
        clock=clock,
    )  # fmt: skip


async def test_a_failed_flush_keeps_its_entries_for_the_next(engine: AsyncEngine) -> None:
    for n in range(3):
        await SQLDeviceRepository(engine).register(f"d{n}", "thermo")
    metrics = GatewayMetrics()
    recorder = _recorder(engine, metrics)
    for n in range(3):
        recorder.seen(f"d{n}")
    async with engine.begin() as connection:  # the table is away: every write fails
        await connection.execute(text("DROP TABLE device_last_seen"))
    assert await recorder.flush() is False
    assert len(recorder) == 3
    assert _sample(metrics, "preservarium_gateway_last_seen_flushes_total", result="failed") == 1
    recorder.seen("d0")  # a newer contact meanwhile: kept once, with the newer time
    assert len(recorder) == 3
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.tables["device_last_seen"].create)
    assert await recorder.flush() is True
    assert len(recorder) == 0
    activity = await SQLDeviceActivityRepository(engine).activity(["d0", "d1", "d2"])
    assert all(a.last_seen_at is not None for a in activity.values())
    assert _sample(metrics, "preservarium_gateway_last_seen_devices_total") == 3


async def test_memory_is_bounded_and_stop_flushes(engine: AsyncEngine) -> None:
    for n in range(3):
        await SQLDeviceRepository(engine).register(f"d{n}", "thermo")
    metrics = GatewayMetrics()
    recorder = _recorder(engine, metrics, max_entries=2)
    await recorder.start()
    for n in range(3):
        recorder.seen(f"d{n}")
    recorder.seen("d0")  # held already: its time moves even when full
    assert (
        len(recorder) == 2 and _sample(metrics, "preservarium_gateway_last_seen_dropped_total") == 1
    )
    await recorder.stop()  # the hour-long interval never came: stop writes what is held
    await recorder.stop()
    activity = await SQLDeviceActivityRepository(engine).activity(["d0", "d1", "d2"])
    assert [activity[d].last_seen_at is not None for d in ("d0", "d1", "d2")] == [
        True,
        True,
        False,
    ]


def test_the_hot_path_is_one_dict_write() -> None:
    """What a contact pays for last seen: measured, far below a contact's own cost."""
    metrics = GatewayMetrics()
    engine = make_engine("sqlite+aiosqlite://")
    recorder = _recorder(engine, metrics, max_entries=100_000)
    ids = [f"device-{n}" for n in range(10_000)]
    started = time.perf_counter()
    for _ in range(10):
        for device_id in ids:
            recorder.seen(device_id)
    per_call = (time.perf_counter() - started) / (10 * len(ids))
    assert len(recorder) == len(ids)
    # A contact costs milliseconds (UDP, Kafka ack, sandbox); this is well under 20 µs
    # even on a loaded machine (about 0.2 µs when idle).
    assert per_call < 20e-6


async def test_two_gateways_keep_the_later_contact(engine: AsyncEngine) -> None:
    await SQLDeviceRepository(engine).register("shared", "thermo")
    metrics = GatewayMetrics()
    clock = SteppedClock(time.time)  # the two gateways' contacts, a second apart each
    early, late = _recorder(engine, metrics, clock), _recorder(engine, metrics, clock)
    early.seen("shared")
    clock.advance(1.0)
    between = datetime.fromtimestamp(clock(), UTC)
    clock.advance(1.0)
    late.seen("shared")
    assert await late.flush() and await early.flush()  # the older one is written last
    activity = await SQLDeviceActivityRepository(engine).activity(["shared"])
    stored = activity["shared"].last_seen_at
    assert stored is not None and stored > between
    async with engine.begin() as connection:
        rows = (await connection.execute(text("SELECT count(*) FROM device_last_seen"))).scalar()
    assert rows == 1
    clock.advance(1.0)
    late.seen("shared")
    assert await late.flush()
    newer = (await SQLDeviceActivityRepository(engine).activity(["shared"]))["shared"]
    assert newer.last_seen_at is not None and newer.last_seen_at > stored
