"""Several gateway processes on one host share one UDP port (aiocoap sets SO_REUSEPORT):
the kernel spreads devices over them by source address and port, and keeps each device
on one gateway, so the deduplication of retransmissions still holds."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import struct

from preservarium.db.engine import make_engine
from preservarium.repositories import SQLDeviceRepository
from preservarium_gateway.server import GatewayServer
from preservarium_sandbox.server import SandboxServer
from preservarium_tools import coapwire as cw
from preservarium_tools.coapwire import CoapClient
from preservarium_tools.embedded.broker import EmbeddedBroker

from tests.gateway.conftest import Topology, gateway_config
from tests.support.kafka import prefix
from tests.support.retransmission import assert_answered_again

DEVICES = 16
READING = bytes.fromhex("01020304") + struct.pack(">h", 123)


def served(gateway: GatewayServer) -> float:
    value = gateway.metrics.registry.get_sample_value(
        "preservarium_gateway_contacts_total",
        {"route": "d", "code": "2.01", "auth": "none", "outcome": "accepted"},
    )
    return value or 0.0


async def test_two_gateways_on_one_port_split_devices_and_keep_each_on_one(
    gw_db: str, gw_sandbox: SandboxServer, broker: EmbeddedBroker
) -> None:
    engine = make_engine(gw_db)
    devices = SQLDeviceRepository(engine)
    for n in range(DEVICES):
        await devices.register(f"shared-{n}", "thermo")
    await engine.dispose()
    first = gateway_config(
        database_url=gw_db, bootstrap=broker.bootstrap, sandbox_addr=gw_sandbox.config.listen,
        topic_prefix=prefix(),
    )  # fmt: skip
    second = dataclasses.replace(first, instance_id=first.instance_id + "-b")
    topics = Topology(broker.bootstrap, first.topics)
    await topics.start()
    try:
        async with GatewayServer(first) as one, GatewayServer(second) as two:
            # One client socket per device: a device is a source address and port.
            clients = [CoapClient("127.0.0.1", first.bind.port, timeout_s=5)
                       for _ in range(DEVICES)]  # fmt: skip
            for client in clients:
                await client.start()
            try:
                # Each device sends its CON twice (a retransmission, same message id).
                messages = [
                    cw.request(cw.POST, f"/d/shared-{n}", mid=client.next_mid(),
                               token=os.urandom(4), payload=READING)
                    for n, client in enumerate(clients)
                ]  # fmt: skip
                answers = await asyncio.gather(
                    *(c.send(m) for c, m in zip(clients, messages, strict=True))
                )
                assert {a.dotted_code for a in answers} == {"2.01"}
                await asyncio.gather(*(
                    assert_answered_again(c, m, a)
                    for c, m, a in zip(clients, messages, answers, strict=True)
                ))  # fmt: skip
            finally:
                for client in clients:
                    await client.stop()
            # Both took devices, and every retransmission met the gateway that had the
            # original: one raw record per device, not two.
            assert served(one) > 0 and served(two) > 0, (served(one), served(two))
            assert served(one) + served(two) == DEVICES
            await topics.raw.wait_for(lambda r: r["device_id"].startswith("shared-"),
                                      count=DEVICES)  # fmt: skip
            await asyncio.sleep(0.3)
            raw = [r for r in topics.raw.values() if r["device_id"].startswith("shared-")]
            assert sorted(r["device_id"] for r in raw) == sorted(
                f"shared-{n}" for n in range(DEVICES)
            )
    finally:
        await topics.stop()
