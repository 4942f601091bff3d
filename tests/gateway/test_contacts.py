"""Device contacts through real UDP, a real broker, a real sandbox and a real database."""

from __future__ import annotations

import asyncio
import base64
import os
import struct

import pytest
from preservarium_gateway.server import GatewayServer
from preservarium_sandbox.server import SandboxServer
from preservarium_tools import coapwire as cw
from preservarium_tools.coapwire import CoapClient

from tests.gateway.conftest import Topology
from tests.gateway.parsers import THERMO
from tests.support.parsers import install_parsers
from tests.support.retransmission import assert_answered_again

SERIAL = bytes.fromhex("282c0242")
READING = SERIAL + struct.pack(">h", 215)


@pytest.fixture(scope="module", autouse=True)
async def setup_parsers(gw_db: str, gw_sandbox: SandboxServer) -> None:
    await install_parsers(gw_db, gw_sandbox, {"thermo": THERMO}, devices=[("dev-1", "thermo")])


async def test_registered_device_gets_raw_and_parsed(coap: CoapClient, topics: Topology) -> None:
    response = await coap.call(cw.POST, "/d/dev-1/sensors/a", READING, query=["x=1"])
    assert response.dotted_code == "2.01"
    raw = (await topics.raw.wait_for(lambda r: r["device_id"] == "dev-1"))[0]
    assert raw["v"] == 1 and raw["path"] == "sensors/a" and raw["method"] == "POST"
    assert raw["confirmable"] is True and raw["device_type"] == "thermo"
    assert base64.b64decode(raw["payload_b64"]) == READING
    assert raw["remote"].startswith("127.0.0.1:") or "127.0.0.1" in raw["remote"]
    parsed = (await topics.parsed.wait_for(lambda r: r["id"] == raw["id"]))[0]
    assert parsed["data"] == {"temperature": 21.5, "path": "sensors/a", "query": {"x": "1"}}
    assert parsed["parser"] == {"name": "thermo", "version": 1}
    assert parsed["received_at"] == raw["received_at"] and parsed["warnings"] == []
    assert topics.parsed.records[0][0] == b"dev-1"


async def test_route_device_is_identified_by_its_parser(coap: CoapClient, topics: Topology) -> None:
    response = await coap.call(cw.POST, "/m", READING)
    assert response.dotted_code == "2.01"
    raw = (await topics.raw.wait_for(lambda r: r["path"] == "m"))[0]
    assert raw["device_id"] is None and topics.raw.records[0][0] is None
    parsed = (await topics.parsed.wait_for(lambda r: r["id"] == raw["id"]))[0]
    assert parsed["device_id"] == SERIAL.hex()


async def test_methods_and_their_success_codes(coap: CoapClient, topics: Topology) -> None:
    assert (await coap.call(cw.PUT, "/d/dev-1", READING)).dotted_code == "2.04"
    assert (await coap.call(cw.PUT, "/m", READING)).dotted_code == "2.04"
    answer = await coap.call(cw.GET, "/t", READING)
    assert answer.dotted_code == "2.05"
    assert len(answer.payload) == 4  # reply(): the time, big-endian
    assert (await coap.call(cw.GET, "/d/dev-1", READING)).dotted_code == "4.05"
    assert (await coap.call(cw.DELETE, "/m", READING)).dotted_code == "4.05"


async def test_bad_payload_goes_to_failed_and_the_device_still_succeeds(
    coap: CoapClient, topics: Topology
) -> None:
    response = await coap.call(cw.POST, "/d/dev-1", b"\x01")
    assert response.dotted_code == "2.01"
    failed = (await topics.failed.wait_for(lambda r: r["device_id"] == "dev-1"))[0]
    assert failed["error"]["kind"] == "runtime_error" and failed["error"]["line"] == 11
    assert base64.b64decode(failed["payload_b64"]) == b"\x01"
    assert await topics.raw.wait_for(lambda r: r["id"] == failed["id"])


@pytest.mark.parametrize(
    ("path", "payload", "code"),
    [
        ("/d/nobody", READING, "4.04"),
        ("/d/bad$id", READING, "4.00"),
        ("/d/" + "x" * 65, READING, "4.00"),
        ("/d/..", READING, "4.00"),
        ("/nowhere", READING, "4.04"),
        ("/d", READING, "4.04"),
        ("/d/dev-1", bytes(1025), "4.13"),
        ("/m", bytes(1025), "4.13"),
    ],
    ids=["unknown", "bad-char", "too-long", "dot-dot", "no-path", "bare-d", "big-d", "big-route"],
)
async def test_bad_requests_get_clear_codes(
    coap: CoapClient, topics: Topology, path: str, payload: bytes, code: str
) -> None:
    response = await coap.call(cw.POST, path, payload)
    assert response.dotted_code == code
    if code == "4.13":
        assert response.uint_option(cw.SIZE1) == 1024
    await asyncio.sleep(0.2)
    assert topics.raw.values() == []


async def test_well_known_core(coap: CoapClient) -> None:
    response = await coap.call(cw.GET, "/.well-known/core")
    assert response.dotted_code == "2.05"
    assert b"</d>" in response.payload and b"</m>" in response.payload


async def test_retransmitted_con_is_answered_from_cache_with_one_raw_record(
    coap: CoapClient, topics: Topology
) -> None:
    message = cw.request(cw.GET, "/t", mid=coap.next_mid(), token=os.urandom(4), payload=READING)
    first = await coap.send(message)
    assert first.dotted_code == "2.05"
    await assert_answered_again(coap, message, first)
    await topics.parsed.wait_for(lambda r: r["device_id"] == SERIAL.hex())
    await asyncio.sleep(0.3)
    assert len(topics.raw.values()) == 1


async def test_non_contacts_are_accepted(coap: CoapClient, topics: Topology) -> None:
    message = cw.request(
        cw.POST, "/d/dev-1", mid=coap.next_mid(), token=os.urandom(4), payload=READING,
        confirmable=False,
    )  # fmt: skip
    response = await coap.send(message)
    assert response.mtype == cw.NON and response.dotted_code == "2.01"
    raw = (await topics.raw.wait_for(lambda r: r["device_id"] == "dev-1"))[0]
    assert raw["confirmable"] is False


async def test_malformed_datagrams_are_survived(coap: CoapClient, gateway: GatewayServer) -> None:
    for junk in (b"", b"\x00", b"\xff" * 40, b"\x40\x02\x00", bytes(range(256))):
        coap.send_raw(junk)
    await asyncio.sleep(0.1)
    assert (await coap.call(cw.POST, "/d/dev-1", READING)).dotted_code == "2.01"


CHATTY = (
    "def parse(payload, metadata):\n"
    "    print('bytes:', len(payload))\n"
    "    if payload == b'bad':\n"
    "        raise ValueError('no')\n"
    "    return {}\n"
)


async def test_what_a_parser_printed_is_kept_with_its_record(
    gw_db: str, gw_sandbox: SandboxServer, coap: CoapClient, topics: Topology
) -> None:
    await install_parsers(gw_db, gw_sandbox, {"chatty": CHATTY}, devices=[("chatty-1", "chatty")])
    assert (await coap.call(cw.POST, "/d/chatty-1", b"ok")).dotted_code == "2.01"
    parsed = (await topics.parsed.wait_for(lambda r: r["device_id"] == "chatty-1"))[0]
    assert parsed["printed"] == "bytes: 2\n"
    assert (await coap.call(cw.POST, "/d/chatty-1", b"bad")).dotted_code == "2.01"
    failed = (await topics.failed.wait_for(lambda r: r["device_id"] == "chatty-1"))[0]
    assert failed["printed"] == "bytes: 3\n" and failed["error"]["kind"] == "runtime_error"
    # A parser that prints nothing adds no field.
    assert (await coap.call(cw.POST, "/d/dev-1", READING)).dotted_code == "2.01"
    quiet = (await topics.parsed.wait_for(lambda r: r["device_id"] == "dev-1"))[0]
    assert "printed" not in quiet
