"""Commands from Kafka, piggy-backed on CON responses, exactly once, surviving restarts."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import struct
import uuid
from collections.abc import AsyncIterator

import pytest
from preservarium.db.engine import make_engine
from preservarium.repositories import SQLDeviceRepository, SQLParserRepository
from preservarium_gateway.server import GatewayServer
from preservarium_sandbox.limits import Limits
from preservarium_sandbox.server import SandboxServer
from preservarium_tools import coapwire as cw
from preservarium_tools.coapwire import CoapClient
from preservarium_tools.embedded.broker import EmbeddedBroker

from tests.gateway.conftest import Topology, gateway_config
from tests.gateway.parsers import THERMO
from tests.sandbox.conftest import sandbox_config
from tests.support.kafka import prefix, produce
from tests.support.parsers import install_parsers
from tests.support.waiting import until

SERIAL = bytes.fromhex("0a0b0c0d")
READING = SERIAL + struct.pack(">h", 200)


@pytest.fixture(scope="module", autouse=True)
async def setup_parsers(gw_db: str, gw_sandbox: SandboxServer) -> None:
    await install_parsers(
        gw_db, gw_sandbox, {"thermo": THERMO}, devices=((f"cmd-{n}", "thermo") for n in range(1, 7))
    )


def command(device_id: str, name: str = "set_period", **extra: object) -> tuple[str, bytes]:
    request_id = uuid.uuid4().hex
    record = {"v": 1, "request_id": request_id, "device_id": device_id, "command": name,
              "params": {"seconds": 900}, **extra}  # fmt: skip
    return request_id, json.dumps(record).encode()


async def send_command(broker: EmbeddedBroker, gateway: GatewayServer, value: bytes) -> None:
    """Keyed by device id, as integrators must: one device's commands stay in order."""
    try:
        key = json.loads(value)["device_id"].encode()
    except (ValueError, KeyError, TypeError, AttributeError):
        key = None
    await produce(broker.bootstrap, gateway.config.topics.command_request, value, key=key)


async def queued(topics: Topology, request_id: str) -> None:
    await topics.status.wait_for(
        lambda r: r["request_id"] == request_id and r["status"] == "queued", timeout_s=20
    )


async def test_a_command_rides_on_the_next_con_response(
    coap: CoapClient, topics: Topology, broker: EmbeddedBroker, gateway: GatewayServer
) -> None:
    request_id, value = command("cmd-1")
    await send_command(broker, gateway, value)
    await queued(topics, request_id)
    response = await coap.call(cw.POST, "/d/cmd-1", READING)
    assert response.dotted_code == "2.01"
    assert response.payload == b"P" + struct.pack(">H", 900)
    sent = await topics.status.wait_for(lambda r: r["status"] == "sent")
    assert sent[0]["request_id"] == request_id
    assert sent[0]["payload_b64"] == "UAOE"
    again = await coap.call(cw.POST, "/d/cmd-1", READING)
    assert again.payload == b""


async def test_non_contacts_never_carry_a_command(
    coap: CoapClient, topics: Topology, broker: EmbeddedBroker, gateway: GatewayServer
) -> None:
    request_id, value = command("cmd-2")
    await send_command(broker, gateway, value)
    await queued(topics, request_id)
    non = cw.request(cw.POST, "/d/cmd-2", mid=coap.next_mid(), token=os.urandom(4),
                     payload=READING, confirmable=False)  # fmt: skip
    assert (await coap.send(non)).payload == b""
    assert [r for r in topics.status.values() if r["status"] == "sent"] == []
    assert (await coap.call(cw.POST, "/d/cmd-2", READING)).payload == b"P\x03\x84"


async def test_commands_go_oldest_first_one_per_contact(
    coap: CoapClient, topics: Topology, broker: EmbeddedBroker, gateway: GatewayServer
) -> None:
    first, value1 = command("cmd-3")
    second, value2 = command("cmd-3", params={"seconds": 60})
    await send_command(broker, gateway, value1)
    await send_command(broker, gateway, value2)
    await queued(topics, second)
    assert (await coap.call(cw.POST, "/d/cmd-3", READING)).payload == b"P\x03\x84"
    assert (await coap.call(cw.POST, "/d/cmd-3", READING)).payload == b"P\x00\x3c"
    sent = await topics.status.wait_for(lambda r: r["status"] == "sent", count=2)
    assert [r["request_id"] for r in sent] == [first, second]


async def test_a_failing_format_is_reported_and_the_next_command_follows(
    coap: CoapClient, topics: Topology, broker: EmbeddedBroker, gateway: GatewayServer
) -> None:
    bad, value1 = command("cmd-4", name="explode")
    good, value2 = command("cmd-4")
    await send_command(broker, gateway, value1)
    await send_command(broker, gateway, value2)
    await queued(topics, good)
    assert (await coap.call(cw.POST, "/d/cmd-4", READING)).payload == b""
    failed = (await topics.status.wait_for(lambda r: r["status"] == "failed"))[0]
    assert failed["request_id"] == bad and "cannot explode" in failed["reason"]
    assert (await coap.call(cw.POST, "/d/cmd-4", READING)).payload == b"P\x03\x84"


async def test_malformed_command_records_are_rejected_and_good_ones_flow(
    coap: CoapClient, topics: Topology, broker: EmbeddedBroker, gateway: GatewayServer
) -> None:
    for junk in (b"not json", b"[1, 2]", b'{"request_id": "x"}',
                 json.dumps({"request_id": "r", "device_id": "bad id!", "command": "c"}).encode(),
                 json.dumps({"request_id": "r2", "device_id": "cmd-5", "command": "c",
                             "params": [1]}).encode()):  # fmt: skip
        await send_command(broker, gateway, junk)
    request_id, value = command("cmd-5")
    await send_command(broker, gateway, value)
    await queued(topics, request_id)
    rejected = await topics.status.wait_for(lambda r: r["status"] == "rejected", count=5)
    assert all(r["reason"] for r in rejected)
    assert {r["request_id"] for r in rejected} == {None, "x", "r", "r2"}
    assert (await coap.call(cw.POST, "/d/cmd-5", READING)).payload == b"P\x03\x84"


async def test_commands_expire(
    coap: CoapClient, topics: Topology, broker: EmbeddedBroker, gateway: GatewayServer
) -> None:
    request_id, value = command("cmd-6", ttl_s=0.5)
    await send_command(broker, gateway, value)
    await queued(topics, request_id)
    expired = await topics.status.wait_for(lambda r: r["status"] == "expired", timeout_s=10)
    assert expired[0]["request_id"] == request_id
    assert (await coap.call(cw.POST, "/d/cmd-6", READING)).payload == b""


async def test_route_devices_get_commands_once_identified(
    coap: CoapClient, topics: Topology, broker: EmbeddedBroker, gateway: GatewayServer
) -> None:
    request_id, value = command(SERIAL.hex())  # a device never seen yet
    await send_command(broker, gateway, value)
    await queued(topics, request_id)
    assert (await coap.call(cw.POST, "/m", READING)).payload == b"P\x03\x84"
    sent = (await topics.status.wait_for(lambda r: r["status"] == "sent"))[0]
    assert sent["device_id"] == SERIAL.hex()


@pytest.fixture
async def shared_db() -> AsyncIterator[str]:
    from tests.support.postgres import create_database, drop_database

    url = await create_database()
    from preservarium.db.migrate import upgrade

    await upgrade(url)
    engine = make_engine(url)
    await SQLParserRepository(engine).upload("thermo", THERMO)
    for n in range(20):
        await SQLDeviceRepository(engine).register(f"race-{n}", "thermo")
    await engine.dispose()
    yield url
    await drop_database(url)


async def test_two_gateways_send_each_command_exactly_once(
    shared_db: str, broker: EmbeddedBroker
) -> None:
    # What is tested is that each command goes exactly once, not how fast: the deadlines
    # a contact runs under are generous. With the usual ones (the sandbox's 100 ms a call,
    # the gateway's 0.5 s for the sandbox's answer) a loaded machine made most of the 40
    # contacts at once miss them (every service here shares this process, and a parallel
    # run shares the cores): the gateway rightly answered them without a command and
    # queued it again for the next contact (`retry_later`), and fewer than 20 were carried.
    topic_prefix = prefix()
    async with SandboxServer(
        sandbox_config(shared_db, limits=Limits(timeout_ms=5000, memory_mb=256))
    ) as sandbox:
        configs = [
            gateway_config(database_url=shared_db, bootstrap=broker.bootstrap,
                           sandbox_addr=sandbox.config.listen, topic_prefix=topic_prefix,
                           sandbox_timeout_s=30.0, publish_timeout_s=30.0)
            for _ in range(2)
        ]  # fmt: skip
        async with GatewayServer(configs[0]) as one, GatewayServer(configs[1]) as two:
            topics = Topology(broker.bootstrap, one.config.topics)
            await topics.start()
            try:
                ids = []
                for n in range(20):
                    request_id, value = command(f"race-{n}")
                    ids.append(request_id)
                    await produce(broker.bootstrap, one.config.topics.command_request, value)
                await topics.status.wait_for(lambda r: r["status"] == "queued", count=20,
                                             timeout_s=30)  # fmt: skip
                # Both indexes refreshed from the database (every 0.2 s, slower when loaded).
                devices = {f"race-{n}" for n in range(20)}
                await until(lambda: all(d in gw.desk.index for d in devices for gw in (one, two)))
                async with (
                    CoapClient("127.0.0.1", one.config.bind.port) as c1,
                    CoapClient("127.0.0.1", two.config.bind.port) as c2,
                ):
                    answers = await asyncio.gather(*(
                        client.call(cw.POST, f"/d/race-{n}", READING, timeout_s=60)
                        for n in range(20) for client in (c1, c2)
                    ))  # fmt: skip
                carried = [a for a in answers if a.payload]
                assert len(carried) == 20
                sent = await topics.status.wait_for(lambda r: r["status"] == "sent", count=20)
                await asyncio.sleep(0.3)
                sent = [r for r in topics.status.values() if r["status"] == "sent"]
                assert sorted(r["request_id"] for r in sent) == sorted(ids)
            finally:
                await topics.stop()


async def test_a_gateway_stopped_while_its_group_forms_stops_at_once(
    gw_db: str, gw_sandbox: SandboxServer, broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """Before its first assignment the command consumer has nothing to commit or hand
    over: a stop (Ctrl-C on `up` just after it started) does not wait for the group to
    form, which takes 3 s on the test broker with a 6 s session (Kafka's shortest by
    default). It sends the group a LeaveGroup for the member id the broker gave it, so
    Kafka does not wait for that member at the group's next join. (Tansu acknowledges
    the LeaveGroup but keeps the member until its session ends.)"""
    config = gateway_config(
        database_url=gw_db,
        bootstrap=broker.bootstrap,
        sandbox_addr=gw_sandbox.config.listen,
        topic_prefix=prefix(),
        command_session_timeout_s=6.0,
    )
    server = GatewayServer(config)
    await server.start()
    await until(lambda: joining(server), timeout_s=10)
    assert not server.consumer.joined
    clock = asyncio.get_running_loop()
    started = clock.time()
    with caplog.at_level(logging.INFO, logger="preservarium.gateway.consumer"):
        await server.stop()
    assert clock.time() - started < 1.5
    assert [r.message for r in caplog.records if r.name == "preservarium.gateway.consumer"] == [
        "left the group before joining it"
    ]


def joining(server: GatewayServer) -> bool:
    """The command consumer is in its first join: aiokafka's coordinator was told the
    group's coordinator and its member id (the broker's answer to the first JoinGroup)."""
    coordinator = getattr(server.consumer._starting, "_coordinator", None)
    task = getattr(coordinator, "_coordination_task", None)
    member = getattr(coordinator, "member_id", "")
    return isinstance(task, asyncio.Task) and not task.done() and bool(member)


async def test_a_pending_command_survives_a_gateway_restart(
    gw_db: str, gw_sandbox: SandboxServer, broker: EmbeddedBroker
) -> None:
    engine = make_engine(gw_db)
    await SQLDeviceRepository(engine).register("restart-1", "thermo")
    await engine.dispose()
    config = gateway_config(
        database_url=gw_db,
        bootstrap=broker.bootstrap,
        sandbox_addr=gw_sandbox.config.listen,
        topic_prefix=prefix(),
    )
    topics = Topology(broker.bootstrap, config.topics)
    await topics.start()
    try:
        request_id, value = command("restart-1")
        async with GatewayServer(config):
            await produce(broker.bootstrap, config.topics.command_request, value)
            await queued(topics, request_id)
        async with GatewayServer(config), CoapClient("127.0.0.1", config.bind.port) as coap:
            assert (await coap.call(cw.POST, "/d/restart-1", READING)).payload == b"P\x03\x84"
    finally:
        await topics.stop()
