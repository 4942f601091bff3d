"""Records the gateway writes always encode: text it echoes back may hold lone surrogates."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

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


def test_record_ids_are_random_version_4_uuids_in_hex() -> None:
    ids = {encoding.new_record_id() for _ in range(1000)}
    assert len(ids) == 1000
    for text in ids:
        parsed = uuid.UUID(hex=text)
        assert parsed.hex == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_rfc3339_is_utc_with_milliseconds_whatever_the_zone() -> None:
    moment = datetime(2026, 11, 30, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert encoding.rfc3339(moment) == "2026-11-30T12:00:00.123Z"
    assert encoding.rfc3339(AT) == encoding.rfc3339(AT) == "2026-11-30T12:00:00.000Z"


def test_encode_writes_compact_json_exactly_as_json_dumps_did() -> None:
    record = {"v": 1, "id": "x", "device_id": None, "confirmable": True, "text": "é ü ✓",
              "nested": {"a": [1, 2.5, None]}, "payload_b64": "AAE="}  # fmt: skip
    expected = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
    assert encoding.encode(record) == expected
