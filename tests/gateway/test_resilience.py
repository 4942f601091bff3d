"""Kafka or the sandbox going away: nothing acknowledged is lost, devices are told to retry."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct

import pytest
from preservarium_gateway.config import GatewayLimits
from preservarium_gateway.server import GatewayServer
from preservarium_sandbox.server import SandboxServer
from preservarium_tools import coapwire as cw
from preservarium_tools.coapwire import CoapClient
from preservarium_tools.embedded.broker import EmbeddedBroker

from tests.gateway.conftest import Topology, gateway_config
from tests.gateway.parsers import THERMO
from tests.sandbox.conftest import sandbox_config
from tests.support.kafka import prefix, produce
from tests.support.net import free_port
from tests.support.parsers import install_parsers

READING = bytes.fromhex("01020304") + struct.pack(">h", 123)


@pytest.fixture(scope="module", autouse=True)
async def setup_parsers(gw_db: str, gw_sandbox: SandboxServer) -> None:
    await install_parsers(gw_db, gw_sandbox, {"thermo": THERMO}, devices=[("res-1", "thermo")])


async def test_a_stopped_sandbox_sends_uplinks_to_failed_and_devices_still_succeed(
    gw_db: str, broker: EmbeddedBroker
) -> None:
    sandbox = SandboxServer(sandbox_config(gw_db))
    await sandbox.start()
    config = gateway_config(database_url=gw_db, bootstrap=broker.bootstrap,
                            sandbox_addr=sandbox.config.listen, topic_prefix=prefix())  # fmt: skip
    topics = Topology(broker.bootstrap, config.topics)
    await topics.start()
    try:
        async with GatewayServer(config), CoapClient("127.0.0.1", config.bind.port) as coap:
            assert (await coap.call(cw.POST, "/d/res-1", READING)).dotted_code == "2.01"
            await topics.parsed.wait_for(lambda r: r["device_id"] == "res-1")
            await sandbox.stop()
            started = asyncio.get_running_loop().time()
            response = await coap.call(cw.POST, "/d/res-1", READING)
            assert response.dotted_code == "2.01"
            assert asyncio.get_running_loop().time() - started < config.limits.sandbox_timeout_s + 1
            failed = (await topics.failed.wait_for(lambda r: r["device_id"] == "res-1"))[0]
            assert failed["error"]["kind"] == "sandbox_unavailable"
            assert base64.b64decode(failed["payload_b64"]) == READING
            assert await topics.raw.wait_for(lambda r: r["id"] == failed["id"])
            # The sandbox comes back: parsing resumes, with no restart of the gateway.
            sandbox = SandboxServer(sandbox_config(gw_db, listen=config.sandbox_addr))
            await sandbox.start()
            for _ in range(50):
                await coap.call(cw.POST, "/d/res-1", READING)
                if len(topics.parsed.values()) >= 2:
                    break
                await asyncio.sleep(0.1)
            assert len(topics.parsed.values()) >= 2
    finally:
        await topics.stop()
        await sandbox.stop()


async def test_503_while_the_broker_is_down_and_nothing_acknowledged_is_lost(
    gw_db: str, gw_sandbox: SandboxServer
) -> None:
    port = free_port()
    broker = EmbeddedBroker(port=port)
    await broker.start()
    # The restarted broker starts empty, and the gateway's clients recreate the topics
    # while this test does. A group that re-forms before `command.request` has all its
    # partitions keeps the first assignment: Tansu answers a rejoin with the previous
    # generation's (its SyncGroup ignores the leader's new one; Kafka bumps the generation).
    # The default session lets the topics settle before the group re-forms.
    session_s = GatewayLimits().command_session_timeout_s
    config = gateway_config(database_url=gw_db, bootstrap=broker.bootstrap,
                            sandbox_addr=gw_sandbox.config.listen, topic_prefix=prefix(),
                            publish_timeout_s=1.0, command_session_timeout_s=session_s)  # fmt: skip
    try:
        async with GatewayServer(config), CoapClient("127.0.0.1", config.bind.port) as coap:
            topics = Topology(broker.bootstrap, config.topics)
            await topics.start()
            payloads = [READING + os.urandom(2) for _ in range(3)]
            for payload in payloads:
                assert (await coap.call(cw.POST, "/d/res-1", payload)).dotted_code == "2.01"
            got = await topics.raw.wait_for(lambda r: True, count=3)
            assert sorted(base64.b64decode(r["payload_b64"]) for r in got) == sorted(payloads)
            await topics.stop()

            await broker.stop()
            down = await coap.call(cw.POST, "/d/res-1", READING)
            assert down.dotted_code == "5.03"
            assert down.uint_option(cw.MAX_AGE) == config.limits.retry_after_s

            await broker.start()
            topics = Topology(broker.bootstrap, config.topics)
            await topics.start()
            acknowledged = []
            for _ in range(100):
                payload = READING + os.urandom(2)
                response = await coap.call(cw.POST, "/d/res-1", payload)
                if response.dotted_code == "2.01":
                    acknowledged.append(payload)
                    if len(acknowledged) == 3:
                        break
                else:
                    assert response.dotted_code == "5.03"
                    await asyncio.sleep(0.2)
            assert len(acknowledged) == 3
            got = await topics.raw.wait_for(
                lambda r: base64.b64decode(r["payload_b64"]) in acknowledged, count=3
            )
            assert len(got) >= 3
            # The command consumer came back too: a command sent now is queued and delivered.
            record = {"v": 1, "request_id": "after-outage", "device_id": "res-1",
                      "command": "set_period", "params": {"seconds": 60}}  # fmt: skip
            await produce(broker.bootstrap, config.topics.command_request,
                          json.dumps(record).encode(), key=b"res-1")  # fmt: skip
            await topics.status.wait_for(
                lambda r: r["request_id"] == "after-outage" and r["status"] == "queued",
                timeout_s=30,
            )
            assert (await coap.call(cw.POST, "/d/res-1", READING)).payload == b"P\x00<"
            await topics.stop()
    finally:
        await broker.stop()


async def test_sigterm_drains_contacts_in_flight(gw_db: str, gw_sandbox: SandboxServer,
                                                 broker: EmbeddedBroker) -> None:  # fmt: skip
    config = gateway_config(
        database_url=gw_db,
        bootstrap=broker.bootstrap,
        sandbox_addr=gw_sandbox.config.listen,
        topic_prefix=prefix(),
    )
    server = GatewayServer(config)
    await server.start()
    async with CoapClient("127.0.0.1", config.bind.port) as coap:
        calls = [asyncio.create_task(coap.call(cw.POST, "/d/res-1", READING)) for _ in range(20)]
        await asyncio.sleep(0.005)
        await server.stop()
        codes = [r.dotted_code for r in await asyncio.gather(*calls, return_exceptions=True)
                 if not isinstance(r, BaseException)]  # fmt: skip
    assert codes and set(codes) <= {"2.01", "5.03"}


async def test_deduplication_memory_is_bounded(gw_db: str, gw_sandbox: SandboxServer,
                                               broker: EmbeddedBroker) -> None:  # fmt: skip
    config = gateway_config(database_url=gw_db, bootstrap=broker.bootstrap,
                            sandbox_addr=gw_sandbox.config.listen, topic_prefix=prefix(),
                            dedup_max_entries=50)  # fmt: skip
    async with GatewayServer(config) as server, CoapClient("127.0.0.1", config.bind.port) as coap:
        for _ in range(4):
            await asyncio.gather(*(coap.call(cw.GET, "/.well-known/core") for _ in range(50)))
        assert server.dedup_entries <= 50
