"""Adversarial findings against the gateway and the command path, one test (or group) each.

Each test failed on the code before its fix: a hostile network peer, Kafka producer or
parser author could break what it checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import timedelta
from typing import Any

import pytest
from preservarium.contract.topics import Topics
from preservarium.db.models import utcnow
from preservarium.errors import ConflictError
from preservarium.repositories import (
    CommandRecord,
    SQLCommandRepository,
    SQLDeviceRepository,
)
from preservarium.sandbox_answers import ParseAnswer, ParserVersion
from preservarium_gateway.commands import MAX_UNAVAILABLE_ATTEMPTS, CommandDesk
from preservarium_gateway.config import GatewayLimits
from preservarium_gateway.directory import UNKNOWN_LOOKUPS_PER_S, DeviceDirectory
from preservarium_gateway.errors import DirectoryBusyError, PublishError
from preservarium_gateway.kafka import KafkaPublisher
from preservarium_gateway.server import GatewayServer
from preservarium_sandbox.server import SandboxServer
from preservarium_tools import coapwire as cw
from preservarium_tools.cli.tail_cmd import Stream, TailOptions, render
from preservarium_tools.coapwire import CoapClient
from preservarium_tools.embedded.broker import EmbeddedBroker
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.gateway.conftest import Topology, gateway_config
from tests.gateway.parsers import READING, SET_PERIOD_900, THERMO
from tests.gateway.test_commands import command, queued, send_command
from tests.support.clock import SteppedClock
from tests.support.kafka import prefix
from tests.support.parsers import install_parsers
from tests.support.waiting import until

DEVICES = ("rt-query", "rt-value", "rt-path")


@pytest.fixture(scope="module", autouse=True)
async def setup_parsers(gw_db: str, gw_sandbox: SandboxServer) -> None:
    await install_parsers(
        gw_db, gw_sandbox, {"thermo": THERMO}, devices=((device, "thermo") for device in DEVICES)
    )


def _desk(engine: AsyncEngine, claimer: str) -> CommandDesk:
    # Never started: the status records it emits are dropped (counted), which is all
    # these tests need from it.
    publisher = KafkaPublisher("127.0.0.1:9", timeout_s=0.1)
    return CommandDesk(
        repository=SQLCommandRepository(engine), publisher=publisher,
        topics=Topics.with_prefix("redteam."), limits=GatewayLimits(), claimer=claimer,
    )  # fmt: skip


async def _queued(engine: AsyncEngine, request_id: str, device_id: str) -> None:
    await SQLCommandRepository(engine).add(
        request_id=request_id, device_id=device_id, name="set_period",
        body='{"params":{}}', expires_at=utcnow() + timedelta(seconds=600),
    )  # fmt: skip


async def _stale_takeover(engine: AsyncEngine) -> tuple[CommandDesk, CommandRecord, CommandDesk]:
    """Gateway A claims r1; its claim goes stale; gateway B sweeps and claims r1."""
    await _queued(engine, "r1", "dev-x")
    desk_a, desk_b = _desk(engine, "gw-a"), _desk(engine, "gw-b")
    await desk_a.refresh()
    await desk_b.refresh()
    mine = await desk_a.claim("dev-x")
    assert mine is not None
    # B's sweep sees A's claim as stale (A stalled, or B's clock runs ahead).
    await SQLCommandRepository(engine).requeue_stale_claims(utcnow() + timedelta(seconds=1))
    await desk_b.refresh()
    theirs = await desk_b.claim("dev-x")
    assert theirs is not None and theirs.request_id == "r1"
    return desk_a, mine, desk_b


class TestExactlyOnceAcrossGateways:
    """A gateway settles only a claim it still holds: never another gateway's."""

    async def test_a_late_release_does_not_requeue_another_gateways_claim(
        self, engine: AsyncEngine
    ) -> None:
        desk_a, mine, _ = await _stale_takeover(engine)
        await desk_a.release(mine)  # A's contact failed late (its raw record timed out)
        third = _desk(engine, "gw-c")
        await third.refresh()
        assert await third.claim("dev-x") is None  # B is sending it: nobody else may

    async def test_a_late_sent_is_refused_so_the_bytes_never_leave(
        self, engine: AsyncEngine
    ) -> None:
        desk_a, mine, desk_b = await _stale_takeover(engine)
        with pytest.raises(ConflictError):
            await desk_a.sent(mine, b"P")
        with pytest.raises(ConflictError):
            await desk_a.failed(mine, "late")
        await desk_b.sent(mine, b"P")  # the holder settles it
        assert (await SQLCommandRepository(engine).get("r1")).status == "sent"


# What the sandbox's gRPC edge refuses (INVALID_ARGUMENT) in a contact: more than 64
# query entries, a text field over 1024 characters. Each fits in one datagram.
OVERSIZED_CONTACTS: dict[str, dict[str, Any]] = {
    "rt-query": {"path": "/d/rt-query", "query": [f"k{n}=v" for n in range(65)]},
    "rt-value": {"path": "/d/rt-value", "query": ["k=" + "v" * 1100]},
    "rt-path": {"path": "/d/rt-path/" + "/".join(["s" * 200] * 6), "query": []},
}


@pytest.mark.parametrize("device_id", sorted(OVERSIZED_CONTACTS))
async def test_a_contact_the_sandbox_would_refuse_is_a_bad_request_and_costs_no_command(
    device_id: str,
    coap: CoapClient,
    topics: Topology,
    broker: EmbeddedBroker,
    gateway: GatewayServer,
) -> None:
    """Before: each such contact claimed the device's command, the sandbox refused the
    call, and the gateway charged the command as if the sandbox were down: a few cheap
    datagrams had the command given up as `failed`, and the uplinks failed as
    `sandbox_unavailable`."""
    request_id, value = command(device_id)
    await send_command(broker, gateway, value)
    await queued(topics, request_id)
    shape = OVERSIZED_CONTACTS[device_id]
    for _ in range(MAX_UNAVAILABLE_ATTEMPTS):
        answer = await coap.call(cw.POST, shape["path"], READING, query=shape["query"])
        assert answer.dotted_code == "4.00"
    response = await coap.call(cw.POST, f"/d/{device_id}", READING)
    assert response.dotted_code == "2.01"
    assert response.payload == SET_PERIOD_900


class TestMadeUpDeviceIds:
    """A flood of `/d/{id}` contacts naming ids nobody registered."""

    async def test_cost_a_bounded_number_of_queries_and_never_a_false_unknown(
        self, engine: AsyncEngine
    ) -> None:
        """Before: every new made-up id was one database query (the unknown-id memory
        helps only for ids seen again), so each cheap datagram cost a query and the
        flood queued in front of the claims of real devices on the connection pool."""
        devices = SQLDeviceRepository(engine)
        clock = SteppedClock(base=lambda: 0.0)  # the budget refills only when stepped
        directory = DeviceDirectory(devices, refresh_s=3600, unknown_ttl_s=60, clock=clock)
        await directory.start()
        try:
            await devices.register("fresh-1", "thermo")  # newer than the memory copy
            statements = _count_statements(engine)
            deferred = 0
            for n in range(300):
                try:
                    assert await directory.device_type(f"made-up-{n}") is None
                except DirectoryBusyError:
                    deferred += 1
            assert len(statements) <= 2 * UNKNOWN_LOOKUPS_PER_S
            assert deferred >= 300 - 2 * UNKNOWN_LOOKUPS_PER_S
            # The budget comes back: a device registered since the last reload is found.
            clock.advance(1.5 / UNKNOWN_LOOKUPS_PER_S)
            assert await directory.device_type("fresh-1") == "thermo"
        finally:
            await directory.stop()


def _count_statements(engine: AsyncEngine) -> list[str]:
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    return statements


# A record on a followed topic is anyone's to write (a hostile producer, a parser's
# error message): what `preservarium tail` prints of it must not steer the terminal.
TERMINAL_STEERING = (
    "\x1b[2J",  # ESC: clears the screen
    "\x9b2J",  # C1 CSI: the same in one character
    "\u202e",  # RIGHT-TO-LEFT OVERRIDE: shows text reversed
    "\u2066",  # LEFT-TO-RIGHT ISOLATE
    "\u2028",  # LINE SEPARATOR: a new line in some terminals
)
STEERING_CHARACTERS = {"\x1b", "\x9b", "\u202e", "\u2066", "\u2028"}
STEERING_RECORDS: dict[Stream, dict[str, Any]] = {
    Stream.failed: {"device_id": "d", "error": {"kind": "k", "message": "m", "line": "{s}"}},
    Stream.status: {"request_id": "r{s}", "status": "sent", "reason": "{s}"},
    Stream.parsed: {"device_id": "d", "parser": {"name": "{s}"}, "data": {"t": "{s}"}},
}


@pytest.mark.parametrize("steering", TERMINAL_STEERING)
@pytest.mark.parametrize("stream", sorted(STEERING_RECORDS))
@pytest.mark.parametrize("as_json", [False, True])
def test_tail_never_prints_characters_that_steer_the_terminal(
    stream: Stream, steering: str, as_json: bool
) -> None:
    """Before: a failed record's `line` was printed as is, bidi overrides and line
    separators passed everywhere, and --json wrote C1 controls raw."""
    template = json.dumps(STEERING_RECORDS[stream])
    record = json.loads(template.replace("{s}", json.dumps(steering)[1:-1]))
    line = render(record, TailOptions(stream, as_json=as_json))
    assert not set(line) & STEERING_CHARACTERS
    if as_json:
        assert json.loads(line) == record  # still the same record, only escaped


class BrokerDown:
    """The publisher's contract in memory: every publish fails while `down` is set."""

    def __init__(self) -> None:
        self.down = True
        self.acknowledged: list[dict[str, Any]] = []
        self.refused = 0

    async def publish(self, topic: str, value: bytes, key: bytes | None) -> None:
        await asyncio.sleep(0)
        if self.down:
            self.refused += 1
            raise PublishError("kafka did not acknowledge (test)")
        self.acknowledged.append(json.loads(value))

    def publish_later(self, topic: str, value: bytes, key: bytes | None) -> None:
        async def send() -> None:
            with contextlib.suppress(PublishError):
                await self.publish(topic, value, key)

        _background.add(task := asyncio.create_task(send()))
        task.add_done_callback(_background.discard)


_background: set[asyncio.Task[None]] = set()


async def test_status_records_of_a_kafka_outage_are_published_once_it_is_back(
    engine: AsyncEngine,
) -> None:
    """Before: `command.status` records went out fire-and-forget, so every status of an
    outage (commands expiring meanwhile, above all) was lost for good while the
    database moved on: the integrator never learnt what became of those commands."""
    broker = BrokerDown()
    fake: Any = broker
    desk = CommandDesk(
        repository=SQLCommandRepository(engine), publisher=fake,
        topics=Topics.with_prefix("redteam."), limits=GatewayLimits(), claimer="gw-a",
    )  # fmt: skip
    await desk.start()
    try:
        for n in range(3):
            await SQLCommandRepository(engine).add(
                request_id=f"brief-{n}", device_id="dev-y", name="set_period",
                body='{"params":{}}', expires_at=utcnow() - timedelta(seconds=1),
            )  # fmt: skip
        await desk.expire()  # the broker is down as they expire
        await until(lambda: broker.refused > 3)  # all three refused, and again on a retry
        assert broker.acknowledged == [] and len(desk.outbox) == 3
        broker.down = False
        for _ in range(100):
            if len(broker.acknowledged) >= 3:
                break
            await asyncio.sleep(0.05)
        assert [(r["request_id"], r["status"]) for r in broker.acknowledged] == [
            (f"brief-{n}", "expired") for n in range(3)
        ]
    finally:
        await desk.stop()


class HeldParser:
    """A ParserService that holds every parse until `gate` opens (a slow sandbox)."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.calls = 0

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.gate.set()

    async def parse(self, contact: Any, **_: Any) -> ParseAnswer:
        self.calls += 1
        await self.gate.wait()
        return ParseAnswer(ParserVersion("thermo", 1), device_id="0a0b0c0d", data_json=b"{}")

    async def format_command(self, device_type: str, command: Any, **_: Any) -> Any:
        raise AssertionError("no command is pending")


async def test_one_source_cannot_hold_more_than_its_share_of_contacts_in_flight(
    gw_db: str, broker: EmbeddedBroker
) -> None:
    """Before: nothing bounded the contacts in flight. Datagrams from one peer, each a
    new contact, piled up behind a slow sandbox or broker, each holding a task, a
    sandbox call and a Kafka send: memory and queued work grew as fast as UDP went."""
    held = HeldParser()
    config = gateway_config(
        database_url=gw_db, bootstrap=broker.bootstrap, sandbox_addr="127.0.0.1:9",
        topic_prefix=prefix(), source_contacts_in_flight=4, sandbox_timeout_s=30.0,
    )  # fmt: skip
    async with (
        GatewayServer(config, parsers=held),
        CoapClient("127.0.0.1", config.bind.port, timeout_s=10) as coap,
    ):
        calls = [
            asyncio.create_task(coap.call(cw.POST, "/m", READING, confirmable=n % 2 == 0))
            for n in range(12)
        ]
        refused = [a for a in await _first(calls, 8) if a.dotted_code == "5.03"]
        assert len(refused) == 8 and all(a.uint_option(cw.MAX_AGE) for a in refused)
        assert held.calls == 4
        held.gate.set()
        answers = await asyncio.gather(*calls)
        assert sorted(a.dotted_code for a in answers) == ["2.01"] * 4 + ["5.03"] * 8
        # Once answered, the places are free again.
        assert (await coap.call(cw.POST, "/m", READING)).dotted_code == "2.01"


async def _first(calls: list[asyncio.Task[Any]], count: int) -> list[Any]:
    done: list[Any] = []
    for next_done in asyncio.as_completed(calls, timeout=10):
        done.append(await next_done)
        if len(done) == count:
            break
    return done
