"""Poison `command.request` records: each gets one `rejected` status with encodable fields,
is committed past (never read again), and never stops the consumer; request ids are not
reused across devices; a command the sandbox cannot format is not retried forever."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from preservarium.contract.contact import Contact
from preservarium.db.engine import make_engine
from preservarium.db.models import utcnow
from preservarium.repositories import SQLCommandRepository
from preservarium.sandbox_answers import CommandAnswer, ParseAnswer, ParserVersion
from preservarium.sandbox_client import (
    CommandInput,
    SandboxRequestError,
    SandboxUnavailableError,
)
from preservarium_gateway.commands import MAX_UNAVAILABLE_ATTEMPTS
from preservarium_gateway.server import GatewayServer
from preservarium_sandbox.server import SandboxServer
from preservarium_tools import coapwire as cw
from preservarium_tools.coapwire import CoapClient
from preservarium_tools.embedded.broker import EmbeddedBroker

from tests.gateway.conftest import Topology, gateway_config
from tests.gateway.parsers import READING, SET_PERIOD_900, THERMO
from tests.support.kafka import prefix, produce
from tests.support.parsers import install_parsers

DEVICES = ("poison-1", "poison-2", "poison-3", "reuse-a", "reuse-b", "restart-p", "fmt-1",
           "fmt-2", "stored-1")  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
async def setup_parsers(gw_db: str, gw_sandbox: SandboxServer) -> None:
    await install_parsers(
        gw_db, gw_sandbox, {"thermo": THERMO}, devices=((device, "thermo") for device in DEVICES)
    )


def record(device_id: str, request_id: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"v": 1, "request_id": request_id or uuid.uuid4().hex, "device_id": device_id,
            "command": "set_period", "params": {"seconds": 900}, **extra}  # fmt: skip


async def send(broker: EmbeddedBroker, topic: str, value: bytes) -> None:
    await produce(broker.bootstrap, topic, value, key=b"poison")


def statuses(topics: Topology, status: str) -> list[dict[str, Any]]:
    return [r for r in topics.status.values() if r["status"] == status]


async def test_poison_records_are_rejected_and_the_consumer_goes_on(
    coap: CoapClient, topics: Topology, broker: EmbeddedBroker, gateway: GatewayServer
) -> None:
    topic = gateway.config.topics.command_request
    tag = uuid.uuid4().hex[:8]
    poison = [
        # A lone surrogate as a JSON escape, in the request id, the name, a params key...
        json.dumps(record("poison-1", f"s1-{tag}\ud800")).encode(),
        json.dumps(record("poison-1", f"s2-{tag}", command="set\udfff")).encode(),
        json.dumps(record("poison-1", f"s3-{tag}", params={"\ud800": 1})).encode(),
        # ...as raw bytes that are not UTF-8, and NaN / Infinity / overflowing numbers.
        json.dumps(record("poison-1", f"s4-{tag}\ud800"), ensure_ascii=False)
        .encode("utf-8", "surrogatepass"),
        json.dumps(record("poison-1", f"s5-{tag}", params={"seconds": float("nan")})).encode(),
        json.dumps(record("poison-1", f"s6-{tag}", ttl_s=float("inf"))).encode(),
        json.dumps(record("poison-1", f"s7-{tag}")).replace("900", "1e999").encode(),
        json.dumps(record("poison-1", f"s8-\x00{tag}")).encode(),
        json.dumps(record("poison-1", f"s9-{tag}", expires_at="0001-01-01T00:00:00+01:00"))
        .encode(),
    ]  # fmt: skip
    for value in poison:
        await send(broker, topic, value)
    good = record("poison-2")
    await send(broker, topic, json.dumps(good).encode())
    await topics.status.wait_for(
        lambda r: r["request_id"] == good["request_id"] and r["status"] == "queued", timeout_s=20
    )
    rejected = await topics.status.wait_for(lambda r: r["status"] == "rejected", count=len(poison))
    assert len(rejected) == len(poison)
    assert all(r["reason"] for r in rejected)
    ids = {r["request_id"] for r in rejected}
    assert f"s1-{tag}\ufffd" in ids  # cleaned to encodable text, still recognisable
    assert {f"s{n}-{tag}" for n in (2, 3, 5, 6, 7)} <= ids
    assert statuses(topics, "queued") == [statuses(topics, "queued")[0]]
    assert (await coap.call(cw.POST, "/d/poison-2", READING)).payload == SET_PERIOD_900
    assert (await coap.call(cw.POST, "/d/poison-1", READING)).payload == b""


async def test_a_request_id_reused_for_another_device_is_rejected(
    coap: CoapClient, topics: Topology, broker: EmbeddedBroker, gateway: GatewayServer
) -> None:
    topic = gateway.config.topics.command_request
    request_id = uuid.uuid4().hex
    first = json.dumps(record("reuse-a", request_id)).encode()
    await send(broker, topic, first)
    await send(broker, topic, json.dumps(record("reuse-b", request_id)).encode())
    await send(broker, topic, json.dumps(record("reuse-a", request_id, params={"s": 1})).encode())
    await send(broker, topic, first)  # an integrator's retry: idempotent
    marker = record("reuse-a")
    await send(broker, topic, json.dumps(marker).encode())
    await topics.status.wait_for(lambda r: r["request_id"] == marker["request_id"], timeout_s=20)
    mine = await topics.status.wait_for(lambda r: r["request_id"] == request_id, count=3)
    assert sorted((r["status"], r["device_id"]) for r in mine) == [
        ("queued", "reuse-a"), ("rejected", "reuse-a"), ("rejected", "reuse-b"),
    ]  # fmt: skip
    assert all(r["reason"] for r in mine if r["status"] == "rejected")
    assert (await coap.call(cw.POST, "/d/reuse-a", READING)).payload == SET_PERIOD_900
    assert (await coap.call(cw.POST, "/d/reuse-b", READING)).payload == b""
    sent = await topics.status.wait_for(lambda r: r["status"] == "sent", timeout_s=5)
    assert [r["request_id"] for r in sent] == [request_id]


async def test_a_poison_record_is_committed_past_so_a_restart_never_reads_it_again(
    topics: Topology, broker: EmbeddedBroker, gateway: GatewayServer
) -> None:
    topic = gateway.config.topics.command_request
    poison_id = f"p-{uuid.uuid4().hex}\udc80"
    good = record("restart-p")
    await send(broker, topic, json.dumps(record("restart-p", poison_id)).encode())
    await send(broker, topic, json.dumps(good).encode())
    await topics.status.wait_for(lambda r: r["request_id"] == good["request_id"], timeout_s=20)
    rejected = await topics.status.wait_for(lambda r: r["status"] == "rejected")
    assert [r["request_id"] for r in rejected] == [poison_id.replace("\udc80", "\ufffd")]
    # What a restarted gateway (same group) would read from: the end of every partition.
    await until_committed(broker, gateway.config.consumer_group, topic)


async def until_committed(broker: EmbeddedBroker, group: str, topic: str) -> None:
    reader = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group,
                              enable_auto_commit=False, metadata_max_age_ms=500)  # fmt: skip
    await reader.start()
    try:
        await reader._client.force_metadata_update()
        partitions = [TopicPartition(topic, p) for p in reader.partitions_for_topic(topic) or {0}]
        ends = await reader.end_offsets(partitions)
        expected = {tp: ends[tp] or None for tp in partitions}
        seen: dict[TopicPartition, int | None] = {}
        for _ in range(100):
            seen = {tp: await reader.committed(tp) for tp in partitions}
            if seen == expected:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"committed {seen}, end of topic {expected}")
    finally:
        await reader.stop()


async def test_a_stored_command_with_invalid_params_is_failed_not_sent(
    gw_db: str, coap: CoapClient, topics: Topology, gateway: GatewayServer
) -> None:
    engine = make_engine(gw_db)
    try:
        for request_id, body in (("old-nan", '{"params":{"s":NaN}}'), ("old-list", "[1]")):
            await SQLCommandRepository(engine).add(
                request_id=f"{request_id}-{uuid.uuid4().hex}", device_id="stored-1",
                name="set_period", body=body, expires_at=utcnow() + timedelta(hours=1),
            )  # fmt: skip
    finally:
        await engine.dispose()
    await gateway.desk.refresh()
    assert (await coap.call(cw.POST, "/d/stored-1", READING)).payload == b""
    failed = await topics.status.wait_for(lambda r: r["status"] == "failed", count=2)
    assert {r["request_id"].split("-")[1] for r in failed} == {"nan", "list"}
    assert all(r["reason"] for r in failed)


class UnreachableSandbox:
    """A ParserService whose calls all fail as they do when the sandbox is away (or hangs)."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.commands: list[str] = []
        # Unavailable: the call that carries the command fails as a whole (the sandbox hung).
        self.parse_fails = isinstance(error, SandboxUnavailableError)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def parse(
        self, contact: Contact, *, identify: bool = False,
        command: CommandInput | None = None, timeout_s: float | None = None,
    ) -> ParseAnswer:  # fmt: skip
        if command is not None and self.parse_fails:
            self.commands.append(command.request_id)
            raise self.error
        return ParseAnswer(ParserVersion(contact.device_type, 1), data_json=b"{}")

    async def format_command(
        self, device_type: str, command: CommandInput, *, timeout_s: float | None = None
    ) -> CommandAnswer:
        self.commands.append(command.request_id)
        raise self.error


@pytest.mark.parametrize(
    ("error", "contacts"),
    [
        (SandboxUnavailableError("no answer in time"), MAX_UNAVAILABLE_ATTEMPTS),
        (SandboxRequestError("params_json must be a JSON object"), 1),
    ],
)
async def test_a_command_the_sandbox_cannot_format_ends_failed(
    gw_db: str, broker: EmbeddedBroker, error: Exception, contacts: int
) -> None:
    device = "fmt-1" if contacts > 1 else "fmt-2"
    config = gateway_config(database_url=gw_db, bootstrap=broker.bootstrap,
                            sandbox_addr="127.0.0.1:9", topic_prefix=prefix())  # fmt: skip
    sandbox = UnreachableSandbox(error)
    topics = Topology(broker.bootstrap, config.topics)
    await topics.start()
    try:
        async with (
            GatewayServer(config, parsers=sandbox),
            CoapClient("127.0.0.1", config.bind.port) as coap,
        ):
            command = record(device)
            await produce(broker.bootstrap, config.topics.command_request,
                          json.dumps(command).encode(), key=device.encode())  # fmt: skip
            await topics.status.wait_for(lambda r: r["status"] == "queued", timeout_s=20)
            # Contact until the command is given up (a contact that races the index
            # refresh may not claim it), then twice more: it is never tried again.
            for _ in range(40):
                assert (await coap.call(cw.POST, f"/d/{device}", READING)).dotted_code == "2.01"
                if any(r["status"] == "failed" for r in topics.status.values()):
                    break
                await asyncio.sleep(0.05)
            for _ in range(2):
                assert (await coap.call(cw.POST, f"/d/{device}", READING)).dotted_code == "2.01"
            [failed] = await topics.status.wait_for(lambda r: r["status"] == "failed")
            assert failed["request_id"] == command["request_id"] and failed["reason"]
            assert sandbox.commands == [command["request_id"]] * contacts
    finally:
        await topics.stop()
