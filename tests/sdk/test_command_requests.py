"""The validation of `command.request` records: strict JSON, encodable text, bounded values.

Whatever the input, the answer is a request whose stored body and record encode again,
or a rejection whose reason and ids encode.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from preservarium.contract.command_requests import (
    MAX_PARAMS_DEPTH,
    MAX_RECORD_BYTES,
    CommandRequest,
    Rejection,
    loads_strict,
    read_command_request,
    validate_command_record,
)

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def read(value: bytes | str) -> CommandRequest | Rejection:
    raw = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
    return read_command_request(raw, now=NOW)


def good(**changes: Any) -> dict[str, Any]:
    record = {"v": 1, "request_id": "r-1", "device_id": "dev-1", "command": "set_period",
              "params": {"seconds": 900}}  # fmt: skip
    record.update(changes)
    return record


def assert_encodable(outcome: CommandRequest | Rejection) -> None:
    if isinstance(outcome, CommandRequest):
        outcome.body().encode("utf-8")
        json.dumps(outcome.params, allow_nan=False, ensure_ascii=False).encode("utf-8")
        for plain in (outcome.request_id, outcome.device_id, outcome.command):
            plain.encode("utf-8")
        return
    outcome.reason.encode("utf-8")
    for text in (outcome.request_id, outcome.device_id):
        if text is not None:
            text.encode("utf-8")


class TestStrictJSON:
    @pytest.mark.parametrize(
        "text",
        [
            '{"seconds": NaN}',
            '{"seconds": Infinity}',
            '{"seconds": -Infinity}',
            '{"seconds": 1e999}',
            '{"seconds": -1e999}',
            '{"a": 1, "a": 2}',
            "[" * 5000 + "]" * 5000,
            '{"a": 1',
        ],
    )
    def test_what_plain_json_does_not_allow_is_refused(self, text: str) -> None:
        record = '{"request_id": "r-9", "device_id": "dev-1", "command": "c", "params": %s}'
        outcome = read(record % text)
        assert isinstance(outcome, Rejection)
        assert_encodable(outcome)

    def test_nan_in_params_keeps_the_ids_for_the_status(self) -> None:
        outcome = read('{"request_id": "r-9", "device_id": "dev-1", "command": "c", '
                       '"params": {"x": NaN}}')  # fmt: skip
        assert isinstance(outcome, Rejection)
        assert (outcome.request_id, outcome.device_id) == ("r-9", "dev-1")

    @pytest.mark.parametrize(
        "raw",
        [
            b'{"request_id": "r\xff", "device_id": "dev-1", "command": "c"}',
            b'{"request_id": "r\xed\xa0\x80", "device_id": "dev-1", "command": "c"}',
            b'\xef\xbb\xbf{"request_id": "r", "device_id": "dev-1", "command": "c"}',
            '{"request_id": "r", "device_id": "dev-1", "command": "c"}'.encode("utf-16"),
        ],
    )
    def test_only_utf8_without_surrogates_is_read(self, raw: bytes) -> None:
        outcome = read(raw)
        assert isinstance(outcome, Rejection)
        assert_encodable(outcome)

    @pytest.mark.parametrize(
        "record",
        [
            '{"request_id": "r\\ud800", "device_id": "dev-1", "command": "c"}',
            '{"request_id": "r", "device_id": "dev-1", "command": "c\\udfff"}',
            '{"request_id": "r", "device_id": "dev-1", "command": "c", "params": {"\\ud800": 1}}',
            '{"request_id": "r", "device_id": "dev-1", "command": "c", '
            '"params": {"a": [{"b": "\\udc80"}]}}',
            '{"request_id": "r", "device_id": "dev-1", "command": "c", "x\\ud800": 1}',
        ],
    )
    def test_lone_surrogate_escapes_are_refused_anywhere(self, record: str) -> None:
        outcome = read(record)
        assert isinstance(outcome, Rejection)
        assert_encodable(outcome)

    def test_a_surrogate_pair_escape_is_one_character(self) -> None:
        outcome = read('{"request_id": "r", "device_id": "dev-1", "command": "c", '
                       '"params": {"e": "\\ud83d\\ude00"}}')  # fmt: skip
        assert isinstance(outcome, CommandRequest)
        assert outcome.params == {"e": "\U0001f600"}

    def test_loads_strict_reads_plain_json(self) -> None:
        assert loads_strict(b'{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}


class TestFields:
    @pytest.mark.parametrize(
        "changes",
        [
            {"v": 2}, {"v": True}, {"v": 1.0}, {"v": "1"},
            {"request_id": ""}, {"request_id": "r" * 129}, {"request_id": 7},
            {"request_id": "a\x00b"}, {"request_id": "a\nb"}, {"request_id": None},
            {"device_id": "bad id"}, {"device_id": 5}, {"device_id": "d" * 65},
            {"command": ""}, {"command": "c" * 129}, {"command": ["c"]}, {"command": "c\x00"},
            {"params": [1]}, {"params": "x"}, {"params": None},
            {"params": {"n": 2**64}}, {"params": {"n": -(2**63) - 1}},
            {"params": {"big": "x" * 20_000}},
            {"ttl_s": 0}, {"ttl_s": -5}, {"ttl_s": True}, {"ttl_s": "60"}, {"ttl_s": 10**30},
            {"ttl_s": 1e-300}, {"ttl_s": None},
            {"ttl_s": 60, "expires_at": "2026-11-30T13:00:00Z"},
            {"expires_at": "2026-11-30"}, {"expires_at": "2026-11-30T13:00:00"},
            {"expires_at": "20261130T130000Z"}, {"expires_at": "2026-13-30T13:00:00Z"},
            {"expires_at": "2026-11-30T13:00:60Z"}, {"expires_at": "0001-01-01T00:00:00+01:00"},
            {"expires_at": "9999-12-31T23:59:59-01:00"}, {"expires_at": "2026-11-30T11:00:00Z"},
            {"expires_at": "2027-11-30T13:00:00Z"}, {"expires_at": 1764500000},
            {"expires_at": "\uff12\uff10\uff12\uff16-11-30T13:00:00Z"},
            {"expires_at": "2026-11-30T13:00:00+99:00"},
        ],
    )  # fmt: skip
    def test_invalid_fields_are_rejected(self, changes: dict[str, Any]) -> None:
        outcome = validate_command_record(good(**changes), now=NOW)
        assert isinstance(outcome, Rejection), changes
        assert outcome.reason
        assert_encodable(outcome)

    def test_nesting_is_bounded(self) -> None:
        params: Any = {}
        for _ in range(MAX_PARAMS_DEPTH + 1):
            params = {"a": params}
        outcome = validate_command_record(good(params=params), now=NOW)
        assert isinstance(outcome, Rejection)

    @pytest.mark.parametrize(
        ("changes", "expires_at"),
        [
            ({}, NOW + timedelta(days=1)),
            ({"ttl_s": 90}, NOW + timedelta(seconds=90)),
            ({"ttl_s": 0.5}, NOW + timedelta(seconds=0.5)),
            ({"expires_at": "2026-11-30T13:00:00Z"}, NOW + timedelta(hours=1)),
            ({"expires_at": "2026-11-30t14:00:00.123456789+01:00"},
             NOW + timedelta(hours=1, microseconds=123456)),
        ],
    )  # fmt: skip
    def test_valid_requests_pass(self, changes: dict[str, Any], expires_at: datetime) -> None:
        outcome = validate_command_record(good(**changes), now=NOW)
        assert isinstance(outcome, CommandRequest)
        assert outcome.expires_at == expires_at
        assert json.loads(outcome.body()) == {"params": {"seconds": 900}}

    def test_the_rejected_request_id_is_cleaned_to_encodable_text(self) -> None:
        outcome = validate_command_record(good(request_id="r\ud800", command=""), now=NOW)
        assert isinstance(outcome, Rejection)
        assert outcome.request_id == "r\ufffd"

    def test_oversized_records_are_rejected_unread(self) -> None:
        outcome = read(b" " * (MAX_RECORD_BYTES + 1))
        assert isinstance(outcome, Rejection)


# -- whatever comes in, the answer encodes --------------------------------------------------

TEXT = st.text(st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF), max_size=12)
SCALARS = (
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | TEXT
)  # fmt: skip
JSONISH = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)
FIELD_VALUES = {
    "v": st.sampled_from([1, 2, True, "1", None]) | JSONISH,
    "request_id": st.text(max_size=4) | TEXT | JSONISH,
    "device_id": st.sampled_from(["dev-1", "a:b.c_d-e", "bad id", ""]) | JSONISH,
    "command": st.text(min_size=1, max_size=4) | JSONISH,
    "params": st.dictionaries(TEXT, JSONISH, max_size=4) | JSONISH,
    "ttl_s": st.integers(-10, 10**7) | st.floats() | JSONISH,
    "expires_at": st.sampled_from(["2026-11-30T13:00:00Z", "2026-11-30T12:00:00+05:00"]) | TEXT,
}
RECORDS = st.fixed_dictionaries({}, optional=FIELD_VALUES)


def dump(record: object) -> bytes:
    """JSON text as an attacker may write it: NaN tokens, surrogates as escapes or raw."""
    return json.dumps(record, ensure_ascii=True).encode("ascii")


@settings(max_examples=400, deadline=None)
@given(record=RECORDS)
def test_any_decoded_record_gives_an_encodable_answer(record: dict[str, Any]) -> None:
    assert_encodable(validate_command_record(record, now=NOW))


@settings(max_examples=400, deadline=None)
@given(record=RECORDS, raw=st.booleans())
def test_any_record_text_gives_an_encodable_answer(record: dict[str, Any], raw: bool) -> None:
    text = json.dumps(record, ensure_ascii=not raw)
    value = text.encode("utf-8", "surrogatepass")  # raw: surrogates as (invalid) UTF-8 bytes
    outcome = read_command_request(value, now=NOW)
    assert_encodable(outcome)
    if isinstance(outcome, CommandRequest):
        assert "NaN" not in outcome.body() and "Infinity" not in outcome.body()


@settings(max_examples=300, deadline=None)
@given(value=st.binary(max_size=200))
def test_any_bytes_give_an_encodable_answer(value: bytes) -> None:
    assert_encodable(read_command_request(value, now=NOW))
