"""A contact that takes the gateway longer than aiocoap's 0.1 s is acknowledged with an
empty ACK and answered on its own (RFC 7252, 5.2.2); a retransmission of it then gets
that empty ACK again, and the contact is recorded once."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from preservarium_sandbox.limits import Limits
from preservarium_sandbox.server import SandboxServer
from preservarium_tools import coapwire as cw
from preservarium_tools.coapwire import CoapClient

from tests.gateway.conftest import Topology
from tests.sandbox.conftest import sandbox_config
from tests.support.parsers import install_parsers
from tests.support.retransmission import assert_answered_again

# Busy for about a second of CPU: well past the 0.1 s after which aiocoap acknowledges.
SLOW = (
    "def parse(payload, metadata):\n"
    "    n = 0\n"
    "    for i in range(3000000):\n"
    "        n += 1\n"
    "    return {'n': n}\n"
)


@pytest.fixture(scope="module")
async def gw_sandbox(gw_db: str) -> AsyncIterator[SandboxServer]:
    """A sandbox whose calls may take seconds."""
    config = sandbox_config(gw_db, limits=Limits(timeout_ms=20_000, memory_mb=256))
    async with SandboxServer(config) as server:
        yield server


@pytest.fixture(scope="module")
def gateway_options() -> dict[str, Any]:
    return {"sandbox_timeout_s": 30.0}


@pytest.fixture(scope="module", autouse=True)
async def setup_parsers(gw_db: str, gw_sandbox: SandboxServer) -> None:
    await install_parsers(gw_db, gw_sandbox, {"slow": SLOW}, devices=[("slow-1", "slow")])


async def test_a_retransmission_of_a_contact_answered_separately_is_acknowledged_once_more(
    coap: CoapClient, topics: Topology
) -> None:
    message = cw.request(cw.POST, "/d/slow-1", mid=coap.next_mid(), token=os.urandom(4),
                         payload=b"x")  # fmt: skip
    first = await coap.send(message, timeout_s=30)
    assert (first.mtype, first.dotted_code) == (cw.CON, "2.01")  # on its own, not in the ACK
    await assert_answered_again(coap, message, first)
    await topics.parsed.wait_for(lambda r: r["device_id"] == "slow-1")
    await asyncio.sleep(0.3)
    raw = [r for r in topics.raw.values() if r["device_id"] == "slow-1"]
    assert len(raw) == 1
