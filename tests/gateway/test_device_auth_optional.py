"""`optional` mode (what `preservarium up` runs): devices registered with `none` and
unregistered route devices pass; a device registered with credentials must present them.
Plus the policy's unit tests, with an in-memory directory."""

from __future__ import annotations

import asyncio
import base64
import struct
import time
from typing import Any

import pytest
from preservarium.db.engine import make_engine
from preservarium.identity import AuthKind, SecretBox
from preservarium.identity.tokens import token_hash
from preservarium.repositories import (
    SQLCredentialRepository,
    SQLDeviceRepository,
    SQLParserRepository,
)
from preservarium.repositories.credentials import NO_CREDENTIALS, AuthEntry
from preservarium.settings import DeviceAuthMode
from preservarium_gateway.authn import (
    AuthFailure,
    DeviceAuthenticator,
    Presented,
    split_token,
)
from preservarium_sandbox.server import SandboxServer
from preservarium_tools import coapwire as cw
from preservarium_tools.coapwire import CoapClient

from tests.gateway.conftest import Topology
from tests.gateway.parsers import THERMO
from tests.sdk.test_identity import KEY_A

TOKEN_ROUTE = "746f6b31"  # identify() of b"tok1..."


def reading(serial: bytes = bytes(4), tag: int = 1) -> bytes:
    return serial + struct.pack(">h", tag)


@pytest.fixture(scope="module", autouse=True)
async def devices(gw_db: str, gw_sandbox: SandboxServer) -> dict[str, Any]:
    engine = make_engine(gw_db)
    await SQLParserRepository(engine).upload("thermo", THERMO)
    credentials = SQLCredentialRepository(engine, secrets=SecretBox([KEY_A]))
    documents = {}
    for device_id, kind in (("opt-tok", AuthKind.TOKEN), ("opt-none", AuthKind.NONE),
                            (TOKEN_ROUTE, AuthKind.TOKEN)):  # fmt: skip
        await SQLDeviceRepository(engine).register(device_id, "thermo")
        documents[device_id] = (await credentials.set_credentials(device_id, kind)).to_json()
    await engine.dispose()
    await gw_sandbox.catalog.refresh()
    return documents


async def test_a_device_registered_with_none_needs_nothing(coap: CoapClient) -> None:
    assert (await coap.call(cw.POST, "/d/opt-none", reading())).dotted_code == "2.01"


async def test_a_device_with_a_token_must_present_it(
    coap: CoapClient, devices: dict[str, Any], topics: Topology
) -> None:
    assert (await coap.call(cw.POST, "/d/opt-tok", reading(tag=5))).dotted_code == "4.01"
    right = [f"t={devices['opt-tok']['token']}"]
    assert (await coap.call(cw.POST, "/d/opt-tok", reading(tag=6), query=right)).dotted_code == (
        "2.01"
    )
    raws = await topics.raw.wait_for(lambda r: r["device_id"] == "opt-tok")
    assert len(raws) == 1


async def test_a_route_device_with_a_token_must_present_it(
    coap: CoapClient, devices: dict[str, Any], topics: Topology
) -> None:
    payload = reading(b"tok1")
    assert (await coap.call(cw.POST, "/m", payload)).dotted_code == "4.01"
    right = [f"t={devices[TOKEN_ROUTE]['token']}"]
    assert (await coap.call(cw.POST, "/m", payload, query=right)).dotted_code == "2.01"
    parsed = await topics.parsed.wait_for(lambda r: r["device_id"] == TOKEN_ROUTE)
    assert len(parsed) == 1  # the refused contact produced no parsed record
    # ...and no raw record either (a route's raw records have no key: any partition).
    await topics.raw.wait_for(lambda r: r["id"] == parsed[0]["id"])
    await asyncio.sleep(0.3)
    assert [r["id"] for r in topics.raw.values() if r["payload_b64"] == b64(payload)] == [
        parsed[0]["id"]
    ]


def b64(payload: bytes) -> str:
    return base64.b64encode(payload).decode()


async def test_an_unregistered_route_device_needs_nothing(coap: CoapClient) -> None:
    assert (await coap.call(cw.POST, "/m", reading(b"new1"))).dotted_code == "2.01"


class Directory:
    """DeviceDirectory's credential lookup, in memory."""

    def __init__(self, entries: dict[str, AuthEntry]) -> None:
        self.entries = entries

    def auth_entry(self, device_id: str) -> AuthEntry:
        return self.entries.get(device_id, NO_CREDENTIALS)


TOKEN = "right-token"
ENTRIES = {
    "tok": AuthEntry(AuthKind.TOKEN, token_hash(TOKEN)),
    "psk": AuthEntry(AuthKind.PSK),
    "oscore": AuthEntry(AuthKind.OSCORE),
}


def authenticator(mode: DeviceAuthMode) -> DeviceAuthenticator:
    fake: Any = Directory(ENTRIES)
    return DeviceAuthenticator(mode=mode, directory=fake)


@pytest.mark.parametrize("mode", list(DeviceAuthMode))
@pytest.mark.parametrize(
    ("device", "presented", "authenticated", "failure"),
    [
        ("tok", Presented(token=TOKEN), AuthKind.TOKEN, None),
        ("tok", Presented(token=TOKEN + "x"), None, AuthFailure.BAD_TOKEN),
        ("tok", Presented(), None, AuthFailure.MISSING),
        ("psk", Presented(dtls_device="psk"), AuthKind.PSK, None),
        ("psk", Presented(), None, AuthFailure.MISSING),
        ("psk", Presented(token=TOKEN), None, AuthFailure.BAD_TOKEN),
        ("tok", Presented(dtls_device="psk"), None, AuthFailure.OTHER_DEVICE),
        ("tok", Presented(dtls_device="psk", token=TOKEN), None, AuthFailure.OTHER_DEVICE),
        ("oscore", Presented(), None, AuthFailure.MISSING),
    ],
)
def test_the_policy(
    mode: DeviceAuthMode,
    device: str,
    presented: Presented,
    authenticated: AuthKind | None,
    failure: AuthFailure | None,
) -> None:
    verdict = authenticator(mode).check(device, presented)
    assert (verdict.authenticated, verdict.failure) == (authenticated, failure)


@pytest.mark.parametrize("presented", [Presented(), Presented(token=TOKEN)])
def test_a_device_without_credentials_is_the_modes_business(presented: Presented) -> None:
    # A token sent by a device that has none (an Efento cloud_token, say) is not checked.
    assert authenticator(DeviceAuthMode.OPTIONAL).check("none", presented).ok
    refused = authenticator(DeviceAuthMode.REQUIRED).check("none", presented)
    assert refused.failure is AuthFailure.MISSING


def test_the_token_is_taken_out_of_the_query() -> None:
    assert split_token({"t": "abc", "x": "1"}) == ("abc", {"x": "1"})
    assert split_token({"x": "1"}) == (None, {"x": "1"})


def test_a_check_costs_microseconds() -> None:
    # The hot path: a token check is a dict lookup, a SHA-256 and a compare_digest.
    check = authenticator(DeviceAuthMode.REQUIRED).check
    presented = Presented(token=TOKEN)
    rounds = 20_000
    started = time.perf_counter()
    for _ in range(rounds):
        check("tok", presented)
    per_check_us = (time.perf_counter() - started) / rounds * 1e6
    assert per_check_us < 100, per_check_us
