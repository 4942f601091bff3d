"""Parser context: a device's attributes and the uplink id reach identify(), parse(),
reply() and format_command(), through a real gateway, sandbox, broker and database."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
from preservarium.db.engine import make_engine
from preservarium.repositories import SQLDeviceRepository, SQLParserRepository
from preservarium_gateway.server import GatewayServer
from preservarium_sandbox.server import SandboxServer
from preservarium_tools import coapwire as cw
from preservarium_tools.coapwire import CoapClient
from preservarium_tools.embedded.broker import EmbeddedBroker

from tests.gateway.conftest import Topology
from tests.gateway.test_commands import command, queued, send_command

# identify() refuses any context but the one a route contact must give it: no attributes
# (the device is not known yet) and the id of the raw uplink record.
CONTEXT = """
import json

def identify(payload, metadata):
    if metadata["attributes"] != {} or len(metadata["uplink_id"] or "") != 32:
        raise ValueError("identify saw " + json.dumps([metadata["attributes"],
                                                       metadata["uplink_id"]]))
    return payload[:4].hex()

def parse(payload, metadata):
    if payload[4:] == b"!" and not metadata["attributes"]:
        raise KeyError("this payload needs the device's attributes")
    metadata["attributes"]["touched"] = True  # a parser's change must not leak to reply()
    return {"attributes": metadata["attributes"], "uplink_id": metadata["uplink_id"],
            "device_id": metadata["device_id"]}

def reply(payload, metadata):
    return json.dumps(metadata["attributes"], sort_keys=True).encode()

def format_command(command):
    return json.dumps(command["attributes"], sort_keys=True).encode()
"""
SITE = {"site": "north", "floor": 3, "calibration": {"offset": -0.5}}
ROUTE_SERIAL = bytes.fromhex("5e5e0001")
ROUTE_DEVICE = ROUTE_SERIAL.hex()


def _body(attributes: dict[str, object]) -> bytes:
    return json.dumps(attributes, sort_keys=True).encode()


@pytest.fixture(scope="module")
async def devices(gw_db: str, gw_sandbox: SandboxServer) -> AsyncIterator[SQLDeviceRepository]:
    engine = make_engine(gw_db)
    await SQLParserRepository(engine).upload("thermo", CONTEXT)
    repository = SQLDeviceRepository(engine)
    await repository.register("ctx-1", "thermo", attributes=SITE)
    await repository.register("ctx-plain", "thermo")
    await repository.register(ROUTE_DEVICE, "thermo", attributes={"route": "yes"})
    await gw_sandbox.catalog.refresh()
    yield repository
    await engine.dispose()


async def test_parse_and_reply_get_the_devices_attributes_and_the_uplink_id(
    devices: SQLDeviceRepository, coap: CoapClient, topics: Topology
) -> None:
    response = await coap.call(cw.POST, "/d/ctx-1", b"\x01\x02\x03\x04")
    assert response.dotted_code == "2.01"
    assert response.payload == _body(SITE)  # reply() got its own, untouched copy
    raw = (await topics.raw.wait_for(lambda r: r["device_id"] == "ctx-1"))[0]
    parsed = (await topics.parsed.wait_for(lambda r: r["id"] == raw["id"]))[0]
    assert parsed["data"] == {
        "attributes": {**SITE, "touched": True}, "uplink_id": raw["id"], "device_id": "ctx-1",
    }  # fmt: skip


async def test_a_device_without_attributes_gets_an_empty_object(
    devices: SQLDeviceRepository, coap: CoapClient, topics: Topology
) -> None:
    response = await coap.call(cw.POST, "/d/ctx-plain", b"\x01")
    assert response.payload == b"{}"
    parsed = (await topics.parsed.wait_for(lambda r: r["device_id"] == "ctx-plain"))[0]
    assert parsed["data"]["attributes"] == {"touched": True}


async def test_on_a_route_identify_sees_none_and_parse_sees_the_named_devices(
    devices: SQLDeviceRepository, coap: CoapClient, topics: Topology, gateway: GatewayServer
) -> None:
    before = gateway.metrics.route_reparses._value.get()
    response = await coap.call(cw.POST, "/m", ROUTE_SERIAL)
    assert response.dotted_code == "2.01"
    assert response.payload == _body({"route": "yes"})
    raw = (await topics.raw.wait_for(lambda r: r["path"] == "m"))[0]
    parsed = (await topics.parsed.wait_for(lambda r: r["id"] == raw["id"]))[0]
    assert parsed["device_id"] == ROUTE_DEVICE
    assert parsed["data"]["attributes"] == {"route": "yes", "touched": True}
    assert parsed["data"]["uplink_id"] == raw["id"]
    assert gateway.metrics.route_reparses._value.get() == before + 1


async def test_an_unregistered_route_device_is_parsed_once_with_no_attributes(
    devices: SQLDeviceRepository, coap: CoapClient, topics: Topology, gateway: GatewayServer
) -> None:
    before = gateway.metrics.route_reparses._value.get()
    response = await coap.call(cw.POST, "/m", bytes.fromhex("5e5e0002"))
    assert response.payload == b"{}"
    parsed = (await topics.parsed.wait_for(lambda r: r["device_id"] == "5e5e0002"))[0]
    assert parsed["data"]["attributes"] == {"touched": True}
    assert gateway.metrics.route_reparses._value.get() == before


async def test_a_route_parse_that_fails_without_attributes_runs_again_with_them(
    devices: SQLDeviceRepository, coap: CoapClient, topics: Topology, gateway: GatewayServer
) -> None:
    before = gateway.metrics.route_reparses._value.get()
    response = await coap.call(cw.POST, "/m", ROUTE_SERIAL + b"!")
    assert response.dotted_code == "2.01" and response.payload == _body({"route": "yes"})
    raw = (await topics.raw.wait_for(lambda r: r["path"] == "m"))[0]
    parsed = (await topics.parsed.wait_for(lambda r: r["id"] == raw["id"]))[0]
    assert parsed["device_id"] == ROUTE_DEVICE
    assert parsed["data"]["attributes"] == {"route": "yes", "touched": True}
    assert gateway.metrics.route_reparses._value.get() == before + 1
    # A device without attributes has nothing to run again with: its failure stands.
    await coap.call(cw.POST, "/m", bytes.fromhex("5e5e0002") + b"!")
    failed = (await topics.failed.wait_for(lambda r: r["error"]["kind"] == "runtime_error"))[0]
    assert "needs the device's attributes" in failed["error"]["message"]
    assert gateway.metrics.route_reparses._value.get() == before + 1


async def test_format_command_gets_the_devices_attributes(
    devices: SQLDeviceRepository,
    coap: CoapClient,
    topics: Topology,
    broker: EmbeddedBroker,
    gateway: GatewayServer,
) -> None:
    request_id, value = command("ctx-1")
    await send_command(broker, gateway, value)
    await queued(topics, request_id)
    response = await coap.call(cw.POST, "/d/ctx-1", b"\x01")
    assert response.payload == _body(SITE)  # the command's bytes, not reply()'s
    await topics.status.wait_for(lambda r: r["request_id"] == request_id and r["status"] == "sent")


async def test_an_attribute_change_reaches_the_next_contacts_within_seconds(
    devices: SQLDeviceRepository, coap: CoapClient, topics: Topology
) -> None:
    await devices.update_attributes("ctx-1", set_={"floor": 4}, unset=("calibration",))
    changed = time.monotonic()
    wanted = _body({"site": "north", "floor": 4})
    while (await coap.call(cw.POST, "/d/ctx-1", b"\x01")).payload != wanted:
        # The watch reads the registry revision every second; 10 s is room for a slow machine.
        assert time.monotonic() - changed < 10, "the change did not reach the gateway"
        await asyncio.sleep(0.1)
    parsed = await topics.parsed.wait_for(
        lambda r: r["device_id"] == "ctx-1" and r["data"]["attributes"].get("floor") == 4
    )
    assert "calibration" not in parsed[-1]["data"]["attributes"]
