"""Validation of `command.request` records: a valid command, or the reason it is rejected."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from preservarium.ids import is_device_id

MAX_NAME = 128
MAX_REQUEST_ID = 128
MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """A valid command request, ready to store."""

    request_id: str
    device_id: str
    command: str
    params: dict[str, Any]
    expires_at: datetime

    def body(self) -> str:
        """What is stored and later handed to format_command()."""
        return json.dumps({"params": self.params}, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Rejection:
    """An invalid request: the reason, and whatever ids could be read from it."""

    reason: str
    request_id: str | None = None
    device_id: str | None = None


def _expiry(record: dict[str, Any], now: datetime, default_s: int, max_s: int) -> datetime:
    if "ttl_s" in record and "expires_at" in record:
        raise ValueError("give ttl_s or expires_at, not both")
    if "expires_at" in record:
        text = record["expires_at"]
        if not isinstance(text, str):
            raise ValueError("expires_at must be an RFC 3339 string")
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("expires_at is not an RFC 3339 timestamp") from None
        if moment.tzinfo is None:
            raise ValueError("expires_at needs a time zone")
        if moment > now + timedelta(seconds=max_s):
            raise ValueError(f"expires_at is more than {max_s} s ahead")
        return moment.astimezone(UTC)
    ttl = record.get("ttl_s", default_s)
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl):
        raise ValueError("ttl_s must be a number of seconds")
    if not 0 < ttl <= max_s:
        raise ValueError(f"ttl_s must be between 0 and {max_s}")
    return now + timedelta(seconds=ttl)


def read_command_request(
    value: bytes | None, *, now: datetime, default_ttl_s: int, max_ttl_s: int
) -> CommandRequest | Rejection:
    """Validate one record value; never raises."""
    if value is None or len(value) > MAX_BODY_BYTES:
        return Rejection("the record is empty or over 64 KiB")
    try:
        record = json.loads(value)
    except (ValueError, RecursionError):
        return Rejection("the record is not JSON")
    if not isinstance(record, dict):
        return Rejection("the record is not a JSON object")
    request_id = record.get("request_id")
    device_id = record.get("device_id")
    seen_request = request_id if isinstance(request_id, str) and request_id else None
    seen_device = device_id if isinstance(device_id, str) and is_device_id(device_id) else None

    def reject(reason: str) -> Rejection:
        return Rejection(reason, seen_request, seen_device)

    if record.get("v", 1) != 1:
        return reject(f"unsupported record version {record.get('v')!r}")
    if not isinstance(request_id, str) or not 1 <= len(request_id) <= MAX_REQUEST_ID:
        return reject("request_id must be a string of 1 to 128 characters")
    if not isinstance(device_id, str) or not is_device_id(device_id):
        return reject("device_id must be 1 to 64 characters of A-Z a-z 0-9 . _ : -")
    command = record.get("command")
    if not isinstance(command, str) or not 1 <= len(command) <= MAX_NAME:
        return reject("command must be a string of 1 to 128 characters")
    params = record.get("params", {})
    if not isinstance(params, dict):
        return reject("params must be a JSON object")
    try:
        expires_at = _expiry(record, now, default_ttl_s, max_ttl_s)
    except ValueError as exc:
        return reject(str(exc))
    if expires_at <= now:
        return reject("the command expired before it arrived")
    return CommandRequest(request_id, device_id, command, params, expires_at)
