"""Every topic's record, built by the contract and read back: the fields a consumer reads
come back as they went in, and the bytes are the documented shape (docs/records.md)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

from preservarium.contract import topics
from preservarium.contract.command_requests import (
    CommandRequest,
    encode_params,
    read_command_request,
    request_record,
    stored_params,
    stored_params_json,
    stored_params_valid,
)
from preservarium.contract.contact import Contact
from preservarium.contract.encoding import decode_record, encode
from preservarium.contract.kinds import SANDBOX_KINDS, ErrorKind
from preservarium.contract.status import Status, status_record
from preservarium.contract.uplinks import (
    failed_record,
    parsed_record,
    raw_record,
    read_raw,
    replayed_record,
)

AT = datetime(2026, 11, 30, 12, 0, 1, 234_000, tzinfo=UTC)
CONTACT = Contact(
    payload=b"\x00\xffpayload", device_type="thermo", device_id="dev-1", path="sensors/a",
    method="PUT", confirmable=False, received_at=AT, query={"x": "1"},
    remote="127.0.0.1:5683", id="0123456789abcdef0123456789abcdef",
)  # fmt: skip
ROUTED = Contact(payload=b"\x01", device_type="thermo", path="m", received_at=AT, id="u2")


def test_topic_names_are_the_suffixes_under_the_prefix() -> None:
    names = topics.Topics.with_prefix("p.")
    assert names.all() == (
        "p.uplink.raw", "p.uplink.parsed", "p.uplink.failed", "p.command.request",
        "p.command.status",
    )  # fmt: skip
    assert (names.raw, names.command_status) == ("p." + topics.RAW, "p." + topics.COMMAND_STATUS)


def test_raw_record_round_trip() -> None:
    value = encode(raw_record(CONTACT))
    assert json.loads(value) == {
        "v": 1, "id": CONTACT.id, "received_at": "2026-11-30T12:00:01.234Z",
        "device_id": "dev-1", "device_type": "thermo", "method": "PUT", "path": "sensors/a",
        "confirmable": False, "remote": "127.0.0.1:5683",
        "payload_b64": base64.b64encode(CONTACT.payload).decode(),
    }  # fmt: skip
    read = read_raw(value)
    assert read is not None and read.payload_b64 == json.loads(value)["payload_b64"]
    again = read.contact()
    assert (again.id, again.received_at, again.device_id, again.device_type) == (
        CONTACT.id, CONTACT.received_at, CONTACT.device_id, CONTACT.device_type,
    )  # fmt: skip
    assert (again.method, again.path, again.confirmable, again.payload) == (
        CONTACT.method, CONTACT.path, CONTACT.confirmable, CONTACT.payload,
    )  # fmt: skip
    assert again.received_at_s == int(AT.timestamp())


def test_a_route_contact_raw_record_names_no_device() -> None:
    read = read_raw(encode(raw_record(ROUTED)))
    assert read is not None and read.routed and read.contact().device_id is None


def test_what_is_not_a_raw_record_is_not_read() -> None:
    for value in (None, b"", b"[]", b'{"id": "x"}', b"\xff", b'{"id":"x","device_type":"t",'
                  b'"payload_b64":"!"}'):  # fmt: skip
        assert read_raw(value) is None


def test_parsed_record_splices_the_data_as_encoded() -> None:
    value = parsed_record(
        CONTACT, device_id="dev-1", parser={"name": "thermo", "version": 3},
        data_json=b'{"t":21.5}', warnings=["w"], printed="hello",
    )  # fmt: skip
    record = decode_record(value)
    assert record == {
        "v": 1, "id": CONTACT.id, "received_at": "2026-11-30T12:00:01.234Z",
        "device_id": "dev-1", "device_type": "thermo", "parser": {"name": "thermo", "version": 3},
        "warnings": ["w"], "printed": "hello", "data": {"t": 21.5},
    }  # fmt: skip
    empty = parsed_record(ROUTED, device_id=None, parser={}, data_json=b"", warnings=[])
    assert json.loads(empty)["data"] == {} and "printed" not in json.loads(empty)


def test_failed_record_round_trip() -> None:
    record = failed_record(
        ROUTED, device_id="dev-9", kind=ErrorKind.DEVICE_MISMATCH, message="no", line=None
    )
    assert decode_record(encode(record)) == {
        "v": 1, "id": "u2", "received_at": "2026-11-30T12:00:01.234Z", "device_id": "dev-9",
        "device_type": "thermo", "payload_b64": "AQ==",
        "error": {"kind": "device_mismatch", "message": "no", "line": None},
    }  # fmt: skip


def test_replayed_records_name_the_replay_and_keep_the_original_texts() -> None:
    stamp, parser = {"id": "rp", "of": "u1"}, {"name": "thermo", "version": 2}
    parsed = replayed_record(
        received_at="2026-01-01T00:00:00.000Z", device_id="d", device_type="t", replay=stamp,
        parser=parser, data={"a": 1}, warnings=[],
    )  # fmt: skip
    assert list(parsed) == ["v", "id", "received_at", "device_id", "device_type", "replay",
                            "parser", "data", "warnings"]  # fmt: skip
    failed = replayed_record(
        received_at="x", device_id=None, device_type="t", replay=stamp, parser=parser,
        payload_b64="AQ==", error={"kind": "timeout", "message": "m", "line": 3},
    )  # fmt: skip
    assert failed["payload_b64"] == "AQ==" and failed["error"]["kind"] == "timeout"
    assert "data" not in failed and parsed["id"] != failed["id"]


def test_status_record_round_trip() -> None:
    record = status_record(
        request_id="r1", device_id="dev-1", status=Status.SENT, at=AT, payload=b"\x01\x02"
    )
    assert decode_record(encode(record)) == {
        "v": 1, "request_id": "r1", "device_id": "dev-1", "status": "sent",
        "at": "2026-11-30T12:00:01.234Z", "payload_b64": "AQI=",
    }  # fmt: skip
    rejected = status_record(request_id=None, device_id=None, status=Status.REJECTED, at=AT,
                             reason="why")  # fmt: skip
    assert json.loads(encode(rejected))["reason"] == "why"


def test_command_request_round_trip() -> None:
    record = request_record(
        request_id="r1", device_id="dev-1", command="set_period", params={"seconds": 900},
        ttl_s=60,
    )  # fmt: skip
    read = read_command_request(encode(record), now=AT)
    assert read == CommandRequest(
        "r1", "dev-1", "set_period", {"seconds": 900}, AT + timedelta(seconds=60)
    )
    assert isinstance(read, CommandRequest)
    assert stored_params(read.body()) == {"seconds": 900} and stored_params_valid(read.body())
    assert read.body() == json.dumps({"params": {"seconds": 900}}, separators=(",", ":"))
    assert stored_params_json(read.body()) == encode_params({"seconds": 900}) == '{"seconds":900}'
    without_ttl = request_record(request_id="r", device_id="d", command="c", params={}, ttl_s=None)
    assert "ttl_s" not in without_ttl


def test_stored_bodies_that_are_not_params_give_none() -> None:
    for body in ("", "[]", '{"params": 1}', '{"params": {"x": NaN}}'):
        assert stored_params(body) == {} and not stored_params_valid(body)
    # Its params text is cut out as is: a body with another key is not one it can cut.
    assert not stored_params_valid('{"params":{},"x":1}')
    assert stored_params_valid("{}") and stored_params_json("{}") == "{}"


def test_the_sandbox_answers_every_kind_but_the_gateways_own() -> None:
    assert ErrorKind.DEVICE_MISMATCH not in SANDBOX_KINDS
    assert len(SANDBOX_KINDS) == len(ErrorKind) - 1
    assert json.loads(encode({"kind": ErrorKind.TIMEOUT})) == {"kind": "timeout"}
