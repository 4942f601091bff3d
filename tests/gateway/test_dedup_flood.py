"""A flood of requests from other senders does not make a device's retransmission new."""

from __future__ import annotations

import asyncio
import os
import struct
from typing import Any

import pytest
from preservarium_gateway.server import GatewayServer
from preservarium_sandbox.server import SandboxServer
from preservarium_tools import coapwire as cw
from preservarium_tools.coapwire import CoapClient

from tests.gateway.conftest import Topology
from tests.gateway.parsers import THERMO
from tests.support.parsers import install_parsers
from tests.support.retransmission import assert_answered_again

READING = bytes.fromhex("0f100f10") + struct.pack(">h", 215)
MAX_ENTRIES, SOURCE_ENTRIES = 200, 50


@pytest.fixture(scope="module", autouse=True)
async def setup_parsers(gw_db: str, gw_sandbox: SandboxServer) -> None:
    await install_parsers(gw_db, gw_sandbox, {"thermo": THERMO})


@pytest.fixture(scope="module")
def gateway_options() -> dict[str, Any]:
    return {"dedup_max_entries": MAX_ENTRIES, "dedup_source_entries": SOURCE_ENTRIES}


async def flood(gateway: GatewayServer, source: str, count: int) -> None:
    """`count` cheap CONs (each a new message id) from `source`, 50 in flight at a time."""
    async with CoapClient("127.0.0.1", gateway.config.bind.port, local_host=source) as client:
        for start in range(0, count, 50):
            calls = [client.call(cw.POST, "/nowhere") for _ in range(min(50, count - start))]
            answers = await asyncio.gather(*calls)
            assert {answer.dotted_code for answer in answers} == {"4.04"}


async def retransmission_is_a_duplicate(
    gateway: GatewayServer, coap: CoapClient, topics: Topology, *flooders: tuple[str, int]
) -> None:
    message = cw.request(cw.GET, "/t", mid=coap.next_mid(), token=os.urandom(4), payload=READING)
    first = await coap.send(message)
    assert first.dotted_code == "2.05"
    for source, count in flooders:
        await flood(gateway, source, count)
    assert gateway.dedup_entries <= MAX_ENTRIES
    # aiocoap's own cache (unbounded, a timer per message) is bypassed, not filled.
    assert all(not cache._manager._recent_messages for cache in gateway._dedup)
    await assert_answered_again(coap, message, first)
    await topics.parsed.wait_for(lambda r: r["device_id"] == READING[:4].hex())
    await asyncio.sleep(0.3)
    assert len(topics.raw.values()) == 1


async def test_one_flooding_source_cannot_evict_another(
    gateway: GatewayServer, coap: CoapClient, topics: Topology
) -> None:
    await retransmission_is_a_duplicate(gateway, coap, topics, ("127.0.0.2", 300))


async def test_a_flooding_socket_cannot_evict_a_device_on_its_own_host(
    gateway: GatewayServer, coap: CoapClient, topics: Topology
) -> None:
    await retransmission_is_a_duplicate(gateway, coap, topics, ("127.0.0.1", 300))


async def test_many_flooding_sources_evict_the_largest_first(
    gateway: GatewayServer, coap: CoapClient, topics: Topology
) -> None:
    flooders = [(f"127.0.0.{n}", 60) for n in range(3, 9)]
    await retransmission_is_a_duplicate(gateway, coap, topics, *flooders)
