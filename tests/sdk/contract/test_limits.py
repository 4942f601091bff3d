"""The limits of a `command.request`, each at its edge: the last value taken and the first
refused (the kind of outcome, never the wording)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from preservarium.contract.command_requests import (
    DEFAULT_TTL_S,
    MAX_INT,
    MAX_NAME,
    MAX_PARAMS_BYTES,
    MAX_PARAMS_DEPTH,
    MAX_RECORD_BYTES,
    MAX_REQUEST_ID,
    MAX_TTL_S,
    MIN_INT,
    CommandRequest,
    Rejection,
    read_command_request,
    validate_command_record,
)

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def check(**changes: Any) -> CommandRequest | Rejection:
    record: dict[str, Any] = {"v": 1, "request_id": "r", "device_id": "d", "command": "c"}
    record.update(changes)
    return validate_command_record(record, now=NOW)


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("field", "limit"), [("request_id", MAX_REQUEST_ID), ("command", MAX_NAME)]
)
def test_text_fields_are_bounded(field: str, limit: int) -> None:
    assert isinstance(check(**{field: "x" * limit}), CommandRequest)
    assert isinstance(check(**{field: "x" * (limit + 1)}), Rejection)
    assert isinstance(check(**{field: ""}), Rejection)


def test_device_id_is_bounded() -> None:
    assert isinstance(check(device_id="d" * 64), CommandRequest)
    assert isinstance(check(device_id="d" * 65), Rejection)


def test_params_size_is_bounded_once_encoded() -> None:
    overhead = len(json.dumps({"s": ""}, separators=(",", ":")))
    assert isinstance(check(params={"s": "x" * (MAX_PARAMS_BYTES - overhead)}), CommandRequest)
    assert isinstance(check(params={"s": "x" * (MAX_PARAMS_BYTES - overhead + 1)}), Rejection)


def test_params_nesting_is_bounded() -> None:
    assert isinstance(check(params=nested(MAX_PARAMS_DEPTH)), CommandRequest)
    assert isinstance(check(params=nested(MAX_PARAMS_DEPTH + 1)), Rejection)


def test_integers_are_bounded_to_64_bits() -> None:
    assert isinstance(check(params={"n": MAX_INT, "m": MIN_INT}), CommandRequest)
    assert isinstance(check(params={"n": MAX_INT + 1}), Rejection)
    assert isinstance(check(params={"n": MIN_INT - 1}), Rejection)


def test_ttl_is_bounded_and_defaults_to_a_day() -> None:
    default = check()
    assert isinstance(default, CommandRequest)
    assert default.expires_at == NOW + timedelta(seconds=DEFAULT_TTL_S)
    assert isinstance(check(ttl_s=MAX_TTL_S), CommandRequest)
    assert isinstance(check(ttl_s=MAX_TTL_S + 1), Rejection)
    assert isinstance(check(ttl_s=0), Rejection)
    ahead = (NOW + timedelta(seconds=MAX_TTL_S + 1)).isoformat()
    assert isinstance(check(expires_at=ahead), Rejection)


def test_record_size_is_bounded_before_it_is_read() -> None:
    value = b'{"pad": "' + b"x" * MAX_RECORD_BYTES + b'"}'
    assert isinstance(read_command_request(value, now=NOW), Rejection)
