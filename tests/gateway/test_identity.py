"""Who a route contact is from: identify() names a device, and the registry has the last word."""

from __future__ import annotations

import asyncio
import struct
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from preservarium.contract.command_requests import CommandRequest
from preservarium.db.engine import make_engine
from preservarium.ids import is_device_id
from preservarium.repositories import SQLDeviceRepository
from preservarium.repositories.commands import CommandStatus, SQLCommandRepository
from preservarium_gateway.server import GatewayServer
from preservarium_sandbox.server import SandboxServer
from preservarium_tools import coapwire as cw
from preservarium_tools.coapwire import CoapClient

from tests.gateway.conftest import Topology
from tests.gateway.parsers import THERMO
from tests.support.parsers import install_parsers

# `/o` is for type "other", whose parser formats any command; `/x` names whatever it is sent.
ROUTES = {"m": "thermo", "o": "other", "x": "echo"}
FORMAT = "def format_command(command):"
OTHER = THERMO.replace(FORMAT, FORMAT + "\n    return b'O'")
ECHO = """
def identify(payload, metadata):
    return payload.decode()

def parse(payload, metadata):
    return {}
"""


@pytest.fixture(scope="module", autouse=True)
async def setup_parsers(gw_db: str, gw_sandbox: SandboxServer) -> None:
    await install_parsers(gw_db, gw_sandbox, {"thermo": THERMO, "other": OTHER, "echo": ECHO})


@pytest.fixture(scope="module")
def gateway_options() -> dict[str, Any]:
    return {"routes": ROUTES}


async def register(gw_db: str, device_id: str, device_type: str) -> None:
    engine = make_engine(gw_db)
    await SQLDeviceRepository(engine).register(device_id, device_type)
    await engine.dispose()


async def queue_command(gateway: GatewayServer, device_id: str) -> str:
    request_id = uuid.uuid4().hex
    expires = datetime.now(UTC) + timedelta(hours=1)
    await gateway.desk.store(CommandRequest(request_id, device_id, "set_period",
                                            {"seconds": 60}, expires))  # fmt: skip
    return request_id


async def status(gw_db: str, request_id: str) -> CommandStatus:
    engine = make_engine(gw_db)
    try:
        return (await SQLCommandRepository(engine).get(request_id)).status
    finally:
        await engine.dispose()


def reading(serial_hex: str) -> bytes:
    return bytes.fromhex(serial_hex) + struct.pack(">h", 215)


async def test_a_route_cannot_speak_for_a_device_of_another_type(
    gw_db: str, gateway: GatewayServer, coap: CoapClient, topics: Topology
) -> None:
    """Registered before the directory's last reload: known from memory."""
    await register(gw_db, "a1b2c3d4", "other")
    await gateway.directory.reload()
    response = await coap.call(cw.POST, "/m", reading("a1b2c3d4"))
    assert response.dotted_code == "4.03"
    failed = (await topics.failed.wait_for(lambda r: r["device_id"] == "a1b2c3d4"))[0]
    assert failed["error"]["kind"] == "device_mismatch"
    assert "other" in failed["error"]["message"] and "thermo" in failed["error"]["message"]
    assert failed["device_type"] == "thermo"
    assert await topics.raw.wait_for(lambda r: r["id"] == failed["id"])  # raw keeps everything
    await asyncio.sleep(0.3)
    assert topics.parsed.values() == []


@pytest.mark.parametrize("confirmable", [True, False], ids=["con", "non"])
async def test_a_route_contact_of_another_type_takes_no_command(
    gw_db: str, gateway: GatewayServer, coap: CoapClient, topics: Topology, confirmable: bool
) -> None:
    """Registered after the directory's last reload, with a command waiting for it."""
    device_id = "e5f6a7b8" if confirmable else "e5f6a7b9"
    await register(gw_db, device_id, "other")
    request_id = await queue_command(gateway, device_id)
    response = await coap.call(cw.POST, "/m", reading(device_id), confirmable=confirmable)
    assert response.dotted_code == "4.03" and response.payload != b"P\x00<"
    failed = (await topics.failed.wait_for(lambda r: r["device_id"] == device_id))[0]
    assert failed["error"]["kind"] == "device_mismatch"
    await asyncio.sleep(0.3)
    assert topics.parsed.values() == []
    assert [r for r in topics.status.values() if r["status"] == "sent"] == []
    assert await status(gw_db, request_id) == CommandStatus.QUEUED
    # The device's own route still gets its command.
    answer = await coap.call(cw.POST, "/o", reading(device_id))
    assert answer.dotted_code == "2.01" and answer.payload == b"O"
    assert await status(gw_db, request_id) == CommandStatus.SENT


async def test_a_route_device_of_the_route_type_is_served(
    gw_db: str, gateway: GatewayServer, coap: CoapClient, topics: Topology
) -> None:
    await register(gw_db, "0badcafe", "thermo")
    request_id = await queue_command(gateway, "0badcafe")
    response = await coap.call(cw.POST, "/m", reading("0badcafe"))
    assert response.dotted_code == "2.01" and response.payload == b"P\x00<"
    parsed = (await topics.parsed.wait_for(lambda r: r["device_id"] == "0badcafe"))[0]
    assert parsed["device_type"] == "thermo"
    assert await status(gw_db, request_id) == CommandStatus.SENT


@pytest.mark.parametrize("named", ["..", ".", "a/b", "x" * 65, "dev 1", ""])
async def test_identify_is_held_to_the_device_id_rules(
    gateway: GatewayServer, coap: CoapClient, topics: Topology, named: str
) -> None:
    response = await coap.call(cw.POST, "/x", named.encode())
    assert response.dotted_code == "2.01"  # the data is safe in the raw topic
    raw = (await topics.raw.wait_for(lambda r: r["path"] == "x"))[0]
    failed = (await topics.failed.wait_for(lambda r: r["id"] == raw["id"]))[0]
    assert failed["error"]["kind"] == "invalid_output" and failed["device_id"] is None
    await asyncio.sleep(0.2)
    assert topics.parsed.values() == []


def test_dot_names_are_not_device_ids() -> None:
    assert not is_device_id(".") and not is_device_id("..")
    assert is_device_id("...") and is_device_id(".a") and is_device_id("a..b")
