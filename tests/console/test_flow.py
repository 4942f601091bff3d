"""The console against the real stack, in headless Chromium: a gateway with its API
listener, a sandbox, the suite's broker and SQLite. Sign in, upload a parser, run it on
a real CoAP uplink, send a command and watch it go `sent`, follow live traffic.

The tests run in order and share one stack and one browser (each costs seconds).
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from preservarium.api_access import Scope
from preservarium.db.engine import make_engine
from preservarium.db.migrate import upgrade
from preservarium.repositories import (
    SQLDeviceRepository,
    SQLParserRepository,
    SQLTokenRepository,
)
from preservarium.settings import HostPort
from preservarium_gateway.server import GatewayServer
from preservarium_sandbox.server import SandboxServer
from preservarium_tools import coapwire as cw
from preservarium_tools.coapwire import CoapClient
from preservarium_tools.embedded.broker import EmbeddedBroker

from tests.console.browser import Browser
from tests.console.conftest import DocShots
from tests.gateway.conftest import gateway_config
from tests.gateway.parsers import THERMO
from tests.sandbox.conftest import sandbox_config
from tests.support.kafka import TopicReader, prefix

DEVICE = "console-1"
READING = bytes.fromhex("0a0b0c0d") + struct.pack(">h", 215)
# The version the browser uploads: the test parser with a unit in its output.
# The badge of the active version (an inactive one's badge says "inactive").
ACTIVE = "#versions tr[data-version='{}'] .badge[data-value='active']"
EXAMPLES = """
- description: 21.5 degrees, with a unit
  input: {device_id: console-1, payload_hex: "0a0b0c0d00d7"}
  output: {data: {unit: C, temperature: 21.5, path: "", query: {}}}
- description: a payload too short to parse
  input: {device_id: console-1, payload_hex: "0a0b"}
  error: runtime_error
- description: set the period
  command: {command: set_period, params: {seconds: 900}}
  output_hex: "500384"
"""
EDITED = THERMO.replace(
    'return {"temperature": raw / 10,', 'return {"unit": "C", "temperature": raw / 10,'
)


@dataclass(frozen=True)
class Stack:
    """What the flow talks to: the gateway's CoAP port and the tokens."""

    coap_port: int
    database_url: str
    status_topic: str
    write_token: str
    read_token: str


@pytest.fixture(scope="module")
async def stack(
    tmp_path_factory: pytest.TempPathFactory, broker: EmbeddedBroker
) -> AsyncIterator[tuple[Stack, str]]:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('console') / 'console.db'}"
    await upgrade(url)
    engine = make_engine(url)
    try:
        await SQLParserRepository(engine).upload("thermo", THERMO)
        await SQLDeviceRepository(engine).register(DEVICE, "thermo")
        tokens = SQLTokenRepository(engine)
        _, write_token = await tokens.create("console-writer", Scope.WRITE)
        _, read_token = await tokens.create("console-reader", Scope.READ)
    finally:
        await engine.dispose()
    async with SandboxServer(sandbox_config(url)) as sandbox:
        config = gateway_config(
            database_url=url, bootstrap=broker.bootstrap, sandbox_addr=sandbox.config.listen,
            topic_prefix=prefix(),
        )  # fmt: skip
        config = dataclasses.replace(config, api_listen=HostPort("127.0.0.1", 0))
        async with GatewayServer(config) as gateway:
            yield (
                Stack(
                    gateway.config.bind.port,
                    url,
                    gateway.config.topics.command_status,
                    write_token,
                    read_token,
                ),
                f"http://127.0.0.1:{gateway.api.port}" if gateway.api else "",
            )


@pytest.fixture(scope="module")
async def console(browser: Browser, stack: tuple[Stack, str]) -> AsyncIterator[Browser]:
    browser.base_url = stack[1]
    yield browser
    # The pages' streams end before the gateway stops, which then has no client to wait for.
    await browser.run(browser.driver.get, "about:blank")


@pytest.fixture(scope="module")
def tokens(stack: tuple[Stack, str]) -> Stack:
    return stack[0]


@pytest.fixture
async def device(tokens: Stack) -> AsyncIterator[CoapClient]:
    async with CoapClient("127.0.0.1", tokens.coap_port, timeout_s=10) as client:
        yield client


@pytest.fixture
async def status(tokens: Stack, broker: EmbeddedBroker) -> AsyncIterator[TopicReader]:
    reader = TopicReader(broker.bootstrap, tokens.status_topic, from_end=True)
    await reader.start()
    yield reader
    await reader.stop()


async def sign_in(console: Browser, token: str) -> None:
    await console.open("/signin")
    await console.script("sessionStorage.clear()")
    await console.type("#token", token)
    await console.click("#signin-submit")


async def test_a_wrong_token_is_refused_with_a_clear_message(console: Browser) -> None:
    await sign_in(console, "pvr_not-a-token")
    message = await console.text_of("#signin-error", "401")
    assert "refused" in message
    assert await console.path() == "/signin"


async def test_signing_in_opens_the_device_list(
    console: Browser, tokens: Stack, doc_shots: DocShots
) -> None:
    await console.open("/signin")
    await doc_shots.take(console, "console-signin")
    await sign_in(console, tokens.write_token)
    await console.text_of("#devices tbody", DEVICE)
    assert await console.path() == "/"
    assert "console-writer" in await console.text_of("#who", "console-writer")
    # Auth, last contact and pending commands come with the list itself.
    row = f"#devices tr[data-device='{DEVICE}']"
    await console.text_of(f"{row} td.auth", "none")
    await console.text_of(f"{row} td.pending", "none")
    assert "…" not in await console.text_of(f"{row} td.contact", "")
    await doc_shots.take(console, "console-devices")
    await console.type("#q", "no-such-device")
    await console.click("#filters button[type='submit']")
    await console.text_of("#devices tbody", "No device matches.")
    await console.type("#q", "CONSOLE")  # any case
    await console.click("#filters button[type='submit']")
    await console.text_of("#devices tbody", DEVICE)


async def test_a_parser_uploaded_in_the_editor_runs_on_a_recent_uplink(
    console: Browser, device: CoapClient, doc_shots: DocShots
) -> None:
    response = await device.call(cw.POST, f"/d/{DEVICE}", READING)
    assert response.dotted_code == "2.01"
    await console.open("/parsers")
    await console.text_of("#parsers tr[data-type='thermo']", "v1")
    await console.click("#parsers tr[data-type='thermo'] a")
    await console.element(ACTIVE.format(1))
    await console.wait(
        lambda d: "def parse" in str(d.find_element("id", "source").get_property("value"))
    )
    await console.set_value("#source", EDITED)
    await console.set_value("#examples", EXAMPLES)
    await console.click("#run-examples")
    await console.text_of("#test-results", "3 of 3 examples passed")
    await console.click("#upload")
    await console.text_of("#upload-result", "Uploaded version 2")
    await console.element(ACTIVE.format(2))
    await console.click("#run-uplinks")
    row = await console.text_of("#test-results tr.uplink", READING.hex())
    await console.text_of("#test-results tr.uplink", '"unit": "C"')
    assert DEVICE in row
    await console.script("document.querySelector('#diff-a').value = '1'")
    await console.script("document.querySelector('#diff-b').value = '2'")
    await console.click("#diff-show")
    assert '"unit": "C"' in await console.text_of("#diff .add", "unit")
    await doc_shots.take(console, "console-parser")
    await console.click("#versions tr[data-version='1'] button.activate")
    await console.text_of("#upload-result", "Version 1 is now active")
    await console.element(ACTIVE.format(1))
    await console.click("#versions tr[data-version='2'] button.activate")
    await console.element(ACTIVE.format(2))


async def test_a_command_sent_from_the_console_goes_sent_on_the_next_contact(
    console: Browser, device: CoapClient, status: TopicReader, doc_shots: DocShots
) -> None:
    await console.open(f"/devices/{DEVICE}")
    await console.text_of("#live-state", "live")
    await console.type("#command-name", "set_period")
    await console.type("#command-params", '{"seconds": 900}')
    await console.click("#send")
    request_id = (await console.text_of("#send-result", "published: request")).rsplit(" ", 1)[-1]
    # The gateway must hold the command before the device comes: the test reads that from
    # the status topic itself (a page's stream joins Kafka at its own pace).
    await status.wait_for(
        lambda r: r["request_id"] == request_id and r["status"] == "queued", timeout_s=30
    )
    response = await device.call(cw.POST, f"/d/{DEVICE}", READING)
    assert response.payload == b"P" + struct.pack(">H", 900)
    assert await console.text_of("#commands tbody .status", "sent") == "sent"
    await console.text_of("#facts dd[data-fact='Last contact']", " ago")
    await doc_shots.take(console, "console-device")


async def test_a_queued_command_is_cancelled_from_the_console(
    console: Browser, status: TopicReader
) -> None:
    await console.open(f"/devices/{DEVICE}")
    await console.text_of("#live-state", "live")
    await console.type("#command-name", "set_period")
    await console.type("#command-params", '{"seconds": 60}')
    await console.click("#send")
    request_id = (await console.text_of("#send-result", "published: request")).rsplit(" ", 1)[-1]
    await status.wait_for(
        lambda r: r["request_id"] == request_id and r["status"] == "queued", timeout_s=30
    )
    await console.click(f"#commands tr[data-request='{request_id}'] button.danger")
    cell = await console.text_of(f"#commands tr[data-request='{request_id}'] .status", "expired")
    assert "cancelled" in cell


async def test_the_live_page_shows_uplinks_and_failures_as_they_arrive(
    console: Browser, device: CoapClient, doc_shots: DocShots
) -> None:
    await console.open(f"/live?device={DEVICE}")
    await console.text_of("#live-state", "live")
    await device.call(cw.POST, f"/d/{DEVICE}", READING)
    await device.call(cw.POST, f"/d/{DEVICE}", READING[:5])  # too short: the parser fails
    await console.text_of("#feed tr[data-stream='raw']", READING.hex())
    await console.text_of("#feed tr[data-stream='parsed']", "temperature")
    await console.text_of("#feed tr[data-stream='failed']", "payload too short")
    await doc_shots.take(console, "console-live")


async def test_a_read_only_token_cannot_send_and_a_forced_attempt_shows_403(
    console: Browser, tokens: Stack
) -> None:
    await sign_in(console, tokens.read_token)
    await console.text_of("#devices tbody", DEVICE)
    await console.open(f"/devices/{DEVICE}")
    send = await console.element("#send")
    assert not await console.run(send.is_enabled)
    await console.script("document.querySelector('#send').disabled = false")
    await console.type("#command-name", "set_period")
    await console.click("#send")
    assert "403" in await console.text_of("#send-result", "403")


async def test_a_token_revoked_while_signed_in_sends_the_operator_back_to_sign_in(
    console: Browser, tokens: Stack
) -> None:
    await sign_in(console, tokens.read_token)
    await console.text_of("#devices tbody", DEVICE)
    engine = make_engine(tokens.database_url)
    try:
        await SQLTokenRepository(engine).revoke("console-reader")
    finally:
        await engine.dispose()
    await console.open(f"/devices/{DEVICE}")
    assert "revoked" in await console.text_of("#signin-error", "401")
    assert (await console.path()).startswith("/signin?next=%2Fdevices%2Fconsole-1")
    assert await console.script("return sessionStorage.getItem('preservarium.token')") is None
