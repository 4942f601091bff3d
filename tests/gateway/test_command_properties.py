"""Property: whatever integrators write on `command.request`, through a real broker and
the consumer to format_command, every record gets exactly one status (`rejected` for an
invalid one, `queued` for a valid one, then `sent` or `failed` at a contact), the
consumer keeps running, and a valid command sent after the garbage reaches its device.

Hypothesis draws a whole batch of records per example (Kafka round trips are slow), and
only a few examples: the unit-level properties in tests/sdk run thousands.
"""

from __future__ import annotations

import json
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from preservarium_gateway.server import GatewayServer
from preservarium_sandbox.server import SandboxServer
from preservarium_tools import coapwire as cw
from preservarium_tools.coapwire import CoapClient
from preservarium_tools.embedded.broker import EmbeddedBroker

from tests.gateway.conftest import Topology
from tests.gateway.parsers import READING, THERMO
from tests.support.parsers import install_parsers

DEVICES = ("prop-1", "prop-2")
SENTINEL = "prop-s"


@pytest.fixture(scope="module", autouse=True)
async def setup_parsers(gw_db: str, gw_sandbox: SandboxServer) -> None:
    await install_parsers(
        gw_db,
        gw_sandbox,
        {"thermo": THERMO},
        devices=((device, "thermo") for device in (*DEVICES, SENTINEL)),
    )


# -- what integrators may write ------------------------------------------------------------

PLAIN_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=8)
SAFE_SCALARS = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | PLAIN_TEXT
)  # fmt: skip
SAFE_JSON = st.recursive(
    SAFE_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(PLAIN_TEXT, inner, max_size=3),
    max_leaves=8,
)
WRONG = st.sampled_from([None, True, 0, -1.5, "", "x", [], [1], {}, {"a": 1}])
# The statuses a record gets when it is read (the others come at device contacts).
ADMISSION = ("queued", "rejected")
FIELDS = ("v", "request_id", "device_id", "command", "params", "ttl_s", "expires_at")


@dataclass(frozen=True)
class Sent:
    """One record as sent, and what its status must be."""

    value: bytes
    tag: str | None  # the request id prefix its status carries (None: no readable id)
    valid: bool


Build = Callable[[str], Sent]


def _dump(record: dict[str, Any], *, raw: bool = False) -> bytes:
    text = json.dumps(record, ensure_ascii=not raw)
    return text.encode("utf-8", "surrogatepass")


@st.composite
def valid(draw: st.DrawFn) -> Build:
    device = draw(st.sampled_from(DEVICES))
    command = draw(st.sampled_from(["set_period", "explode"]) | PLAIN_TEXT.filter(_printable))
    params = draw(st.dictionaries(PLAIN_TEXT, SAFE_JSON, max_size=4)
                  | st.builds(lambda s: {"seconds": s}, st.integers(0, 65535)))  # fmt: skip
    extra = draw(st.sampled_from([{}, {"ttl_s": 3600}, {"v": 1}]))

    def build(rid: str) -> Sent:
        record = {"request_id": rid, "device_id": device, "command": command, "params": params}
        return Sent(_dump({**record, **extra}), rid, True)

    return build


def _printable(text: str) -> bool:
    return bool(text) and all(ch.isprintable() for ch in text)


@st.composite
def invalid(draw: st.DrawFn) -> Build:
    device = draw(st.sampled_from(DEVICES))
    kind = draw(st.sampled_from([
        "surrogate-escape", "surrogate-raw", "bad-utf8", "nan", "infinity", "overflow",
        "deep", "huge", "wrong-type", "dup-key", "expired",
    ]))  # fmt: skip
    field = draw(st.sampled_from(FIELDS))
    wrong = draw(WRONG)
    where = draw(st.sampled_from(["request_id", "command", "params-key", "params-value", "x"]))
    lone = draw(st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"]))

    def build(rid: str) -> Sent:
        record: dict[str, Any] = {"request_id": rid, "device_id": device, "command": "c",
                                  "params": {"seconds": 1}}  # fmt: skip
        if kind in ("surrogate-escape", "surrogate-raw"):
            if where == "params-key":
                record["params"] = {lone: 1}
            elif where == "params-value":
                record["params"] = {"a": [{"b": "x" + lone}]}
            elif where == "x":
                record["x" + lone] = 1
            else:
                record[where] = record[where] + lone
            return Sent(_dump(record, raw=kind == "surrogate-raw"), rid, False)
        if kind == "bad-utf8":
            return Sent(_dump(record).replace(b'"c"', b'"c\xff\xfe"'), rid, False)
        if kind in ("nan", "infinity", "overflow"):
            token = {"nan": "NaN", "infinity": "-Infinity", "overflow": "1e999"}[kind]
            return Sent(_dump(record).replace(b'"seconds": 1', f'"s": {token}'.encode()), rid,
                        False)  # fmt: skip
        if kind == "deep":
            record["params"] = {"d": json.loads("[" * 40 + "]" * 40)}
        elif kind == "huge":
            record["params"] = {"h": "x" * 20_000}
        elif kind == "dup-key":
            return Sent(_dump(record)[:-1] + b', "command": "d"}', rid, False)
        elif kind == "expired":
            record["expires_at"] = "2001-01-01T00:00:00Z"
        else:
            return _wrong_type(record, rid, field, wrong)
        return Sent(_dump(record), rid, False)

    return build


def _wrong_type(record: dict[str, Any], rid: str, field: str, wrong: Any) -> Sent:
    right_types: dict[str, type | tuple[type, ...]] = {
        "v": int, "request_id": str, "device_id": str, "command": str,
        "params": dict, "ttl_s": (int, float), "expires_at": str,
    }  # fmt: skip
    if isinstance(wrong, right_types[field]) and not isinstance(wrong, bool):
        wrong = [wrong]  # never the right type by accident
    record[field] = wrong
    return Sent(_dump(record), None if field == "request_id" else rid, False)


@st.composite
def garbage(draw: st.DrawFn) -> Build:
    value = draw(st.binary(max_size=64) | st.sampled_from(
        [b"", b"null", b"[1, 2]", b'"text"', b"NaN", b"{", b"\xff\xfe{}", b"{}" * 3]
    ))  # fmt: skip

    def build(rid: str) -> Sent:
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        ours = isinstance(parsed, dict) and "request_id" in parsed  # drawn by chance
        return Sent(b"[]" if ours else value, None, False)

    return build


BATCHES = st.lists(st.one_of(valid(), invalid(), garbage()), min_size=5, max_size=25)


# -- the property --------------------------------------------------------------------------


async def produce_all(broker: EmbeddedBroker, topic: str, values: list[bytes]) -> None:
    """One producer for the batch, one key: one partition, read in order."""
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send(topic, value, key=b"property")
        await producer.flush()
    finally:
        await producer.stop()


def of_tag(tag: str) -> Callable[[dict[str, Any]], bool]:
    return lambda r: isinstance(r["request_id"], str) and r["request_id"].startswith(tag)


@settings(max_examples=8, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])  # fmt: skip
@given(batch=BATCHES)
async def test_every_record_gets_its_status_and_good_commands_still_flow(
    batch: list[Build],
    coap: CoapClient, topics: Topology, broker: EmbeddedBroker, gateway: GatewayServer,
) -> None:  # fmt: skip
    example = uuid.uuid4().hex[:8]
    start = len([r for r in topics.status.values() if r["status"] in ADMISSION])
    sent = [build(f"{example}-{n}-") for n, build in enumerate(batch)]
    sentinel_id = f"{example}-sentinel"
    sentinel = {"request_id": sentinel_id, "device_id": SENTINEL, "command": "set_period",
                "params": {"seconds": 900}}  # fmt: skip
    topic = gateway.config.topics.command_request
    await produce_all(broker, topic, [s.value for s in sent] + [json.dumps(sentinel).encode()])

    await topics.status.wait_for(lambda r: r["request_id"] == sentinel_id, timeout_s=20)
    untagged = sum(1 for s in sent if s.tag is None)
    expected = len(sent) + 1
    await topics.status.wait_for(lambda r: r["status"] in ADMISSION, count=start + expected,
                                 timeout_s=20)  # fmt: skip
    mine = [r for r in topics.status.values() if r["status"] in ADMISSION][start:]
    assert len(mine) == expected, mine
    for item in sent:
        if item.tag is None:
            continue
        [status] = [r for r in mine if of_tag(item.tag)(r)]
        assert status["status"] == ("queued" if item.valid else "rejected"), (item, status)
        if not item.valid:
            assert status["reason"]
    others = [r for r in mine if not of_tag(example)(r)]
    assert len(others) == untagged and all(r["status"] == "rejected" for r in others)

    # The sentinel reaches its device: the consumer and the sandbox are fine.
    response = await coap.call(cw.POST, f"/d/{SENTINEL}", READING)
    assert response.payload == b"P" + struct.pack(">H", 900)
    # Every valid command goes through format_command at its device's contacts.
    valid_ids = {item.tag for item in sent if item.valid}
    for device in DEVICES:
        for _ in range(3 * len(valid_ids) + 1):
            if not (await coap.call(cw.POST, f"/d/{device}", READING)).payload and all(
                _settled(topics, rid) for rid in valid_ids
            ):
                break
    await topics.status.wait_for(
        lambda r: r["request_id"] in valid_ids and r["status"] in ("sent", "failed"),
        count=len(valid_ids), timeout_s=10,
    )  # fmt: skip


def _settled(topics: Topology, request_id: str | None) -> bool:
    return any(
        r["request_id"] == request_id and r["status"] in ("sent", "failed")
        for r in topics.status.values()
    )
