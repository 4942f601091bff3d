"""Records the gateway writes always encode: text it echoes back may hold lone surrogates."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

from preservarium_gateway import records

AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_a_status_of_a_rejected_record_is_cleaned_to_encodable_text() -> None:
    record = records.status_record(request_id="r\ud800", device_id="d\udfff", status="rejected",
                                   at=AT, reason="why \udc80" + "x" * 5000)  # fmt: skip
    decoded = json.loads(records.encode(record))
    assert decoded["request_id"] == "r\ufffd" and decoded["device_id"] == "d\ufffd"
    assert decoded["reason"].startswith("why \ufffd")
    assert len(decoded["reason"]) <= records.MAX_REASON_CHARS


def test_encode_never_raises_on_text() -> None:
    value = records.encode({"v": 1, "nested": [{"\ud800": "x\udfff"}]})
    assert json.loads(value) == {"v": 1, "nested": [{"\ufffd": "x\ufffd"}]}


def test_uplink_ids_are_random_version_4_uuids_in_hex() -> None:
    ids = {records.uplink_id() for _ in range(1000)}
    assert len(ids) == 1000
    for text in ids:
        parsed = uuid.UUID(hex=text)
        assert parsed.hex == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_rfc3339_is_utc_with_milliseconds_whatever_the_zone() -> None:
    moment = datetime(2026, 11, 30, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert records.rfc3339(moment) == "2026-11-30T12:00:00.123Z"
    assert records.rfc3339(AT) == records.rfc3339(AT) == "2026-11-30T12:00:00.000Z"
