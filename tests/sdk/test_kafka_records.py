"""Reading the connector's topics for humans: whatever a record holds, what comes back
can be printed (encoded as UTF-8)."""

from __future__ import annotations

import json

import pytest
from preservarium.contract.encoding import decode_record


@pytest.mark.parametrize(
    "value",
    [
        b'{"request_id": "r\\ud800", "reason": "x"}',
        b'{"\\udfff": {"deep": ["\\udc80"]}}',
        b'{"a": NaN, "b": "ok"}',
    ],
)
def test_what_is_read_can_be_printed(value: bytes) -> None:
    record = decode_record(value)
    assert isinstance(record, dict)
    json.dumps(record, ensure_ascii=False).encode("utf-8")


@pytest.mark.parametrize(
    "value", [None, b"", b"[1]", b'{"a": "\xed\xa0\x80"}', b'{"a": "\xff"}', b"[" * 100_000]
)
def test_what_is_not_a_utf8_json_object_is_none(value: bytes | None) -> None:
    assert decode_record(value) is None


def test_surrogates_are_replaced_and_the_rest_kept() -> None:
    assert decode_record(b'{"id": "r\\ud800", "n": 1}') == {"id": "r\ufffd", "n": 1}
