"""The contact pipeline's stages, in memory: a fake sandbox and a fake publisher stand in
for gRPC and Kafka (the fast unit tier; tests/gateway/test_contacts.py runs the same
stages over real UDP, a real sandbox and a real broker).

Nothing here opens a socket or a database: the directory and the command desk are built
on an engine that is never connected (no device has a command waiting, so the desk never
asks), and nothing is started.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from preservarium.contract.contact import Contact
from preservarium.contract.kinds import ErrorKind
from preservarium.contract.topics import Topics
from preservarium.db.engine import make_engine
from preservarium.repositories import SQLCommandRepository, SQLDeviceRepository
from preservarium.sandbox_answers import (
    CommandAnswer,
    ParseAnswer,
    ParserVersion,
    ScriptError,
)
from preservarium.sandbox_client import CommandInput, SandboxUnavailableError
from preservarium.settings import DeviceAuthMode
from preservarium.supervisor import Supervisor
from preservarium_gateway.admission import Admission
from preservarium_gateway.authn import DeviceAuthenticator
from preservarium_gateway.commands import CommandDesk
from preservarium_gateway.config import GatewayLimits
from preservarium_gateway.contact import ContactPipeline, Outcome
from preservarium_gateway.directory import DeviceDirectory
from preservarium_gateway.errors import PublishError
from preservarium_gateway.last_seen import LastSeenRecorder
from preservarium_gateway.log_throttle import LogThrottle
from preservarium_gateway.metrics import GatewayMetrics

TOPICS = Topics.with_prefix("unit.")
AT = datetime(2026, 11, 30, 12, 0, 0, 500_000, tzinfo=UTC)
PARSER = ParserVersion("thermo", 4)
LIMITS = GatewayLimits(device_rate_per_min=0, source_rate_per_min=0, auth_failures_per_min=0)


def contact(**changes: Any) -> Contact:
    base = Contact(
        payload=b"\x0a\x0b", device_type="thermo", device_id="dev-1", path="a", method="POST",
        confirmable=True, received_at=AT, query={"x": "1"}, remote="192.0.2.1:5683", id="u1",
    )  # fmt: skip
    return replace(base, **changes)


@dataclass
class FakeSandbox:
    """A ParserService that answers what the test set, and keeps what it was asked."""

    answer: ParseAnswer | None = None
    calls: list[tuple[Contact, bool]] = field(default_factory=list)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def parse(
        self,
        contact: Contact,
        *,
        identify: bool = False,
        command: CommandInput | None = None,
        timeout_s: float | None = None,
    ) -> ParseAnswer:
        self.calls.append((contact, identify))
        if self.answer is None:
            raise SandboxUnavailableError("no sandbox in this test")
        return self.answer

    async def format_command(
        self, device_type: str, command: CommandInput, *, timeout_s: float | None = None
    ) -> CommandAnswer:
        raise AssertionError("no command is pending in these tests")


@dataclass
class FakePublisher:
    """Keeps every record by topic; `durable` False refuses the awaited ones."""

    durable: bool = True
    records: dict[str, list[tuple[bytes | None, dict[str, Any]]]] = field(default_factory=dict)

    async def publish(self, topic: str, value: bytes, key: bytes | None) -> None:
        if not self.durable:
            raise PublishError("the broker did not acknowledge in time")
        self.publish_later(topic, value, key)

    def publish_later(self, topic: str, value: bytes, key: bytes | None) -> None:
        self.records.setdefault(topic, []).append((key, json.loads(value)))

    def only(self, topic: str) -> tuple[bytes | None, dict[str, Any]]:
        (record,) = self.records.get(topic, [])
        return record


class NoStore:
    async def record_seen(self, seen: Any) -> int:
        return 0


@dataclass
class Rig:
    pipeline: ContactPipeline
    sandbox: FakeSandbox
    publisher: FakePublisher


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'never-opened.db'}")
    metrics, sandbox, publisher = GatewayMetrics(), FakeSandbox(), FakePublisher()
    directory = DeviceDirectory(SQLDeviceRepository(engine), refresh_s=60, unknown_ttl_s=1)
    desk = CommandDesk(
        repository=SQLCommandRepository(engine), publisher=publisher, topics=TOPICS,
        limits=LIMITS, claimer="unit", sandbox=sandbox, directory=directory, metrics=metrics,
    )  # fmt: skip
    admission = Admission(
        authenticator=DeviceAuthenticator(mode=DeviceAuthMode.OPTIONAL, directory=directory),
        limits=LIMITS, metrics=metrics, throttle=LogThrottle(),
    )  # fmt: skip
    last_seen = LastSeenRecorder(
        store=NoStore(), flush_s=60, max_entries=10, metrics=metrics, supervisor=Supervisor()
    )
    pipeline = ContactPipeline(
        publisher=publisher, sandbox=sandbox, desk=desk, directory=directory, topics=TOPICS,
        limits=LIMITS, metrics=metrics, admission=admission, last_seen=last_seen,
    )  # fmt: skip
    yield Rig(pipeline, sandbox, publisher)
    await engine.dispose()


async def test_a_parsed_contact_gets_its_raw_and_parsed_records_and_the_reply(rig: Rig) -> None:
    rig.sandbox.answer = ParseAnswer(
        PARSER, data_json=b'{"t":21.5}', warnings=("w",), reply=b"\x01", device_id="dev-1"
    )
    answer = await rig.pipeline.handle(contact())
    assert (answer.outcome, answer.body) == (Outcome.ACCEPTED, b"\x01")
    key, raw = rig.publisher.only(TOPICS.raw)
    assert key == b"dev-1" and raw["id"] == "u1" and raw["remote"] == "192.0.2.1:5683"
    assert raw["received_at"] == "2026-11-30T12:00:00.500Z" and raw["payload_b64"] == "Cgs="
    key, parsed = rig.publisher.only(TOPICS.parsed)
    assert key == b"dev-1" and parsed["id"] == "u1" and parsed["data"] == {"t": 21.5}
    assert parsed["parser"] == {"name": "thermo", "version": 4} and parsed["warnings"] == ["w"]
    ((asked, identify),) = rig.sandbox.calls
    assert asked == contact() and not identify


async def test_a_parser_error_goes_to_the_failed_topic_and_the_device_succeeds(rig: Rig) -> None:
    rig.sandbox.answer = ParseAnswer(PARSER, ScriptError(ErrorKind.RUNTIME_ERROR, "boom", 3))
    answer = await rig.pipeline.handle(contact())
    assert answer.outcome is Outcome.ACCEPTED and answer.body == b""
    _, failed = rig.publisher.only(TOPICS.failed)
    assert failed["error"] == {"kind": "runtime_error", "message": "boom", "line": 3}
    assert TOPICS.parsed not in rig.publisher.records


async def test_an_absent_sandbox_is_a_failed_record_not_a_failed_contact(rig: Rig) -> None:
    answer = await rig.pipeline.handle(contact())
    assert answer.outcome is Outcome.ACCEPTED
    _, failed = rig.publisher.only(TOPICS.failed)
    assert failed["error"]["kind"] == "sandbox_unavailable"
    assert rig.publisher.only(TOPICS.raw)[1]["id"] == "u1"


async def test_a_raw_record_not_acknowledged_makes_the_device_retry(rig: Rig) -> None:
    rig.publisher.durable = False
    rig.sandbox.answer = ParseAnswer(PARSER, data_json=b"{}")
    answer = await rig.pipeline.handle(contact())
    assert answer.outcome is Outcome.RETRY_LATER
    assert rig.publisher.records == {}


async def test_a_route_contact_is_named_by_identify(rig: Rig) -> None:
    rig.sandbox.answer = ParseAnswer(PARSER, device_id="0a0b", data_json=b"{}")
    answer = await rig.pipeline.handle(contact(device_id=None, path="m"))
    assert answer.outcome is Outcome.ACCEPTED
    key, raw = rig.publisher.only(TOPICS.raw)
    assert key is None and raw["device_id"] is None
    key, parsed = rig.publisher.only(TOPICS.parsed)
    assert key == b"0a0b" and parsed["device_id"] == "0a0b"
    ((_, identify),) = rig.sandbox.calls
    assert identify
