"""The Kafka records (docs/records.md), built from plain values. No I/O here."""

from __future__ import annotations

import base64
import functools
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from preservarium.text import clean_text

VERSION = 1
MAX_REASON_CHARS = 1000
# json.dumps builds a new encoder for every call that passes options: one, built once.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
# The version (4) and variant (RFC 4122) bits of a random UUID, as uuid.uuid4 sets them.
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def uplink_id() -> str:
    """A new uplink id: a random (version 4) UUID as 32 hex digits, the same as
    `uuid.uuid4().hex` without building a UUID object (one per contact)."""
    number = int.from_bytes(os.urandom(16)) & _UUID4_CLEAR | _UUID4_SET
    return f"{number:032x}"


@functools.lru_cache(maxsize=1024)
def rfc3339(moment: datetime) -> str:
    """UTC timestamp with milliseconds and a Z. Memoized: a contact's raw and parsed
    records carry the same time (a pure function of its argument)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def b64(data: bytes) -> str:
    """Standard base64 text."""
    return base64.b64encode(data).decode("ascii")


def encode(record: dict[str, Any]) -> bytes:
    """A record value: compact UTF-8 JSON. Never raises on text: a lone surrogate that
    slipped into a value is written as U+FFFD (it can only sit inside a JSON string)."""
    text = _ENCODER.encode(record)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return clean_text(text).encode("utf-8")


@dataclass(frozen=True, slots=True)
class Uplink:
    """One accepted device contact, as the records describe it."""

    id: str
    received_at: datetime
    device_id: str | None
    device_type: str
    method: str
    path: str
    confirmable: bool
    remote: str
    payload: bytes
    query: dict[str, str]


def raw_record(uplink: Uplink) -> dict[str, Any]:
    """`uplink.raw`."""
    return {
        "v": VERSION,
        "id": uplink.id,
        "received_at": rfc3339(uplink.received_at),
        "device_id": uplink.device_id,
        "device_type": uplink.device_type,
        "method": uplink.method,
        "path": uplink.path,
        "confirmable": uplink.confirmable,
        "remote": uplink.remote,
        "payload_b64": b64(uplink.payload),
    }


def parsed_record(
    uplink: Uplink,
    *,
    device_id: str | None,
    parser: dict[str, Any],
    data_json: bytes,
    warnings: list[str],
    printed: str = "",
) -> bytes:
    """`uplink.parsed`, with the parser's data spliced in as the sandbox encoded it;
    `printed` (what the parser print()ed, bounded by the sandbox) only when there is some."""
    head: dict[str, Any] = {
        "v": VERSION,
        "id": uplink.id,
        "received_at": rfc3339(uplink.received_at),
        "device_id": device_id,
        "device_type": uplink.device_type,
        "parser": parser,
        "warnings": warnings,
    }
    if printed:
        head["printed"] = printed
    # The sandbox already checked and encoded `data`: splice it instead of re-encoding.
    return encode(head)[:-1] + b',"data":' + (data_json or b"{}") + b"}"


def failed_record(
    uplink: Uplink,
    *,
    device_id: str | None,
    kind: str,
    message: str,
    line: int | None,
    printed: str = "",
) -> dict[str, Any]:
    """`uplink.failed`; `printed` only when the parser print()ed something."""
    record: dict[str, Any] = {
        "v": VERSION,
        "id": uplink.id,
        "received_at": rfc3339(uplink.received_at),
        "device_id": device_id,
        "device_type": uplink.device_type,
        "payload_b64": b64(uplink.payload),
        "error": {"kind": kind, "message": message, "line": line},
    }
    if printed:
        record["printed"] = printed
    return record


def status_record(
    *,
    request_id: str | None,
    device_id: str | None,
    status: str,
    at: datetime,
    reason: str | None = None,
    payload: bytes | None = None,
) -> dict[str, Any]:
    """`command.status`; the ids and reason may come from a rejected record: cleaned."""
    record: dict[str, Any] = {
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
