"""How every record value is written and read: compact UTF-8 JSON with `"v": 1`, times
in RFC 3339 UTC, bytes in base64. No I/O here (aiokafka is the SDK's optional `kafka`
extra: nothing in the contract imports it)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from preservarium.text import clean_text, has_surrogates

VERSION = 1
Record = dict[str, Any]


def rfc3339(moment: datetime) -> str:
    """UTC timestamp with milliseconds and a Z."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def b64(data: bytes) -> str:
    """Standard base64 text."""
    return base64.b64encode(data).decode("ascii")


def encode(record: Record) -> bytes:
    """A record value: compact UTF-8 JSON. Never raises on text: a lone surrogate that
    slipped into a value is written as U+FFFD (it can only sit inside a JSON string)."""
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return clean_text(text).encode("utf-8")


def decode_record(value: bytes | None) -> Record | None:
    """A record's JSON object, or None for anything else (a foreign or broken record).

    Only UTF-8 is read, and lone surrogates (`\\ud800` escapes) come back as U+FFFD:
    whatever is read here gets printed, and a terminal cannot encode a lone surrogate.
    """
    try:
        record = json.loads((value or b"").decode("utf-8"))
        if not isinstance(record, dict):
            return None
        text = json.dumps(record, ensure_ascii=False)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return json.loads(clean_text(text)) if has_surrogates(text) else record
