"""RFC 7252 at the edge: critical options, text options, datagram size, malformed input."""

from __future__ import annotations

import asyncio
import logging
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
from tests.support.waiting import until

READING = bytes.fromhex("0c0d0e0f") + struct.pack(">h", 215)
URI_HOST, OSCORE, PROXY_URI, ELECTIVE, CRITICAL = 3, 9, 35, 2048, 2049


@pytest.fixture(scope="module", autouse=True)
async def setup_parsers(gw_db: str, gw_sandbox: SandboxServer) -> None:
    await install_parsers(gw_db, gw_sandbox, {"thermo": THERMO}, devices=[("conf-1", "thermo")])


def refused(gateway: GatewayServer, cause: str) -> float:
    value = gateway.metrics.registry.get_sample_value(
        "preservarium_gateway_datagrams_refused_total", {"cause": cause}
    )
    return value or 0.0


def message(
    coap: CoapClient,
    *,
    path: str = "/d/conf-1",
    options: tuple[tuple[int, bytes], ...] = (),
    payload: bytes = READING,
    confirmable: bool = True,
) -> cw.CoapMessage:
    return cw.request(
        cw.POST, path, mid=coap.next_mid(), token=os.urandom(4), payload=payload,
        confirmable=confirmable, extra=options,
    )  # fmt: skip


async def no_records(topics: Topology) -> None:
    await asyncio.sleep(0.3)
    assert topics.raw.values() == []


@pytest.mark.parametrize("confirmable", [True, False], ids=["con", "non"])
@pytest.mark.parametrize("number", [OSCORE, 1, 5, 19, CRITICAL], ids=str)
async def test_an_unknown_critical_option_is_a_bad_option(
    coap: CoapClient, topics: Topology, number: int, confirmable: bool
) -> None:
    request = message(coap, options=((number, b"\x01"),), confirmable=confirmable)
    response = await coap.send(request, timeout_s=3)
    assert response.dotted_code == "4.02"
    assert response.mtype == (cw.ACK if confirmable else cw.NON)
    await no_records(topics)


@pytest.mark.parametrize("number", [URI_HOST, ELECTIVE], ids=["uri-host", "elective"])
async def test_known_critical_and_elective_options_pass(
    coap: CoapClient, topics: Topology, number: int
) -> None:
    response = await coap.send(message(coap, options=((number, b"gateway"),)))
    assert response.dotted_code == "2.01"
    assert await topics.raw.wait_for(lambda r: r["device_id"] == "conf-1")


async def test_a_proxy_request_is_refused(coap: CoapClient, topics: Topology) -> None:
    request = message(coap, options=((PROXY_URI, b"coap://elsewhere/x"),))
    assert (await coap.send(request, timeout_s=3)).dotted_code == "5.05"
    await no_records(topics)


@pytest.mark.parametrize("confirmable", [True, False], ids=["con", "non"])
@pytest.mark.parametrize(
    "options",
    [((cw.URI_PATH, b"d"), (cw.URI_PATH, b"conf-\xff")), ((cw.URI_PATH, b"\xc3\x28"),),
     ((cw.URI_PATH, b"m"), (cw.URI_QUERY, b"t=\xed\xa0\x80"))],
    ids=["path-id", "route", "query"],
)  # fmt: skip
async def test_text_options_that_are_not_utf8_are_a_bad_request(
    coap: CoapClient,
    gateway: GatewayServer,
    topics: Topology,
    options: tuple[tuple[int, bytes], ...],
    confirmable: bool,
) -> None:
    before = refused(gateway, "bad_text")
    request = cw.CoapMessage(
        cw.CON if confirmable else cw.NON, cw.POST, coap.next_mid(), os.urandom(4), options,
        READING,
    )  # fmt: skip
    response = await coap.send(request, timeout_s=3)
    assert response.dotted_code == "4.00"
    if confirmable:
        assert response.mtype == cw.ACK and response.mid == request.mid
    else:
        assert response.mtype == cw.NON
    assert refused(gateway, "bad_text") == before + 1
    await no_records(topics)


@pytest.mark.parametrize("options_bytes", [3000, 5000], ids=["3k", "over-the-read-buffer"])
async def test_a_datagram_over_the_limit_is_refused_with_413(
    coap: CoapClient, gateway: GatewayServer, topics: Topology, options_bytes: int
) -> None:
    before = refused(gateway, "oversize")
    request = message(coap, options=((ELECTIVE, b"o" * options_bytes),), payload=b"x")
    response = await coap.send(request, timeout_s=3)
    assert response.dotted_code == "4.13" and response.uint_option(cw.SIZE1) == 1024
    assert refused(gateway, "oversize") == before + 1
    await no_records(topics)


async def test_a_full_payload_with_ordinary_options_fits(
    coap: CoapClient, gateway: GatewayServer, topics: Topology
) -> None:
    options = ((ELECTIVE, b"o" * 400), (cw.URI_QUERY, b"x=" + b"k" * 64))
    request = message(coap, options=options, payload=READING + bytes(1024 - len(READING)))
    assert gateway.config.limits.max_datagram_bytes >= len(cw.encode(request)) > 1400
    assert (await coap.send(request)).dotted_code == "2.01"


MALFORMED = {
    "unparsable": [b"\x40\x02\x00\x01\xd0", b"\x40\x02\x00\x01\x0f", b"\x40\x02\x00\x01\xf0",
                   b"\x49\x02\x00\x01abcdefghi", b"\x48\x02\x00\x01abc", b"\x40\x02",
                   b"\x80\x02\x00\x01"],
    "bad_text": [b"\x60\x45\x00\x01\xb1\xff", b"\x50\x45\x00\x01\xb2\xc3\x28"],
}  # fmt: skip
MISFITS = [b"\x40\xe0\x00\x01", b"\x60\x02\x00\x01"]  # 7.00 CON; a request sent as ACK


async def test_malformed_datagrams_are_counted_and_logged_within_bounds(
    coap: CoapClient, gateway: GatewayServer, caplog: pytest.LogCaptureFixture
) -> None:
    rounds = 40
    before = {cause: refused(gateway, cause) for cause in MALFORMED}
    caplog.set_level(logging.INFO)
    for _ in range(rounds):
        for datagram in [*MALFORMED["unparsable"], *MALFORMED["bad_text"], *MISFITS]:
            coap.send_raw(datagram)
        await asyncio.sleep(0.005)
    expected = {cause: before[cause] + rounds * len(MALFORMED[cause]) for cause in MALFORMED}
    await until(lambda: all(refused(gateway, c) == n for c, n in expected.items()))
    assert (await coap.call(cw.POST, "/d/conf-1", READING)).dotted_code == "2.01"
    noisy = [r for r in caplog.records if r.levelno >= logging.INFO]
    # one line per cause and per aiocoap message kind, however many datagrams came in
    assert len(noisy) <= 6, [(r.name, r.getMessage()) for r in noisy]
    assert not [r for r in noisy if r.exc_info]
