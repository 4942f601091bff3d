"""Records the gateway writes always encode: text it echoes back may hold lone surrogates."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from preservarium.contract import encoding, status

AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_a_status_of_a_rejected_record_is_cleaned_to_encodable_text() -> None:
    record = status.status_record(request_id="r\ud800", device_id="d\udfff", status="rejected",
                                   at=AT, reason="why \udc80" + "x" * 5000)  # fmt: skip
    decoded = json.loads(encoding.encode(record))
    assert decoded["request_id"] == "r\ufffd" and decoded["device_id"] == "d\ufffd"
    assert decoded["reason"].startswith("why \ufffd")
    assert len(decoded["reason"]) <= status.MAX_REASON_CHARS


def test_encode_never_raises_on_text() -> None:
    value = encoding.encode({"v": 1, "nested": [{"\ud800": "x\udfff"}]})
    assert json.loads(value) == {"v": 1, "nested": [{"\ufffd": "x\ufffd"}]}
