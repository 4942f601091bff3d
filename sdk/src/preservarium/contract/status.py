"""`command.status` records: what became of a command request (docs/records.md)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from preservarium.contract.encoding import VERSION, Record, b64, rfc3339
from preservarium.text import clean_text

MAX_REASON_CHARS = 1000
# The reason of a command an operator cancelled (reported `expired`).
CANCEL_REASON = "cancelled"


class Status(StrEnum):
    """The `status` of a `command.status` record."""

    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"
    EXPIRED = "expired"
    REJECTED = "rejected"


def status_record(
    *,
    request_id: str | None,
    device_id: str | None,
    status: str,
    at: datetime,
    reason: str | None = None,
    payload: bytes | None = None,
) -> Record:
    """`command.status`; the ids and reason may come from a rejected record: cleaned."""
    record: Record = {
        "v": VERSION,
        "request_id": None if request_id is None else clean_text(request_id),
        "device_id": None if device_id is None else clean_text(device_id),
        "status": status,
        "at": rfc3339(at),
    }
    if reason is not None:
        record["reason"] = clean_text(reason, limit=MAX_REASON_CHARS)
    if payload is not None:
        record["payload_b64"] = b64(payload)
    return record
