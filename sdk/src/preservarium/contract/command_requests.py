"""`command.request` records, validated at the edge: a request that can always be encoded
again, or the reason it is rejected; and the body a valid request is stored with.

The gateway's consumer reads records with `read_command_request`; `preservarium command
send` and the API build what they publish with `request_record` and check it with
`validate_command_record`, the same rules.
A record is parsed strictly: UTF-8 only, no `NaN`/`Infinity` constants and no number
that overflows to one, no repeated keys, no lone surrogates in any key or value, bounded
size and nesting. What passes is plain JSON that `json.dumps` and UTF-8 take back as is,
so nothing downstream (the database, the sandbox, the status records) can choke on it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from preservarium.contract.encoding import VERSION, Record
from preservarium.errors import PreservariumError
from preservarium.ids import is_device_id
from preservarium.text import clean_text, has_surrogates, is_plain_text

MAX_RECORD_BYTES = 64 * 1024
MAX_REQUEST_ID = 128
MAX_NAME = 128
MAX_PARAMS_BYTES = 16 * 1024
MAX_PARAMS_DEPTH = 16
DEFAULT_TTL_S = 86_400
MAX_TTL_S = 30 * 86_400
# Integers a device command plausibly carries (64-bit, signed or not); beyond that a
# number is a mistake or an attack on whatever does arithmetic with it.
MIN_INT, MAX_INT = -(2**63), 2**64 - 1
RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))",
    re.ASCII,
)
# How a stored body starts: `{"params":` and the params text.
STORED_PREFIX = '{"params":'
FIELDS = frozenset({"v", "request_id", "device_id", "command", "params", "ttl_s", "expires_at"})


class CommandRequestError(PreservariumError):
    """A command request is invalid; `reason` says why (never quotes the input)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """A valid command request, ready to store."""

    request_id: str
    device_id: str
    command: str
    params: dict[str, Any]
    expires_at: datetime

    def body(self) -> str:
        """What is stored: `{"params":...}`, whose params text later goes to format_command()
        as it is (stored_params_json)."""
        return STORED_PREFIX + encode_params(self.params) + "}"


@dataclass(frozen=True, slots=True)
class Rejection:
    """An invalid request: the reason, and the ids it names, cleaned to encodable text."""

    reason: str
    request_id: str | None = None
    device_id: str | None = None


def read_command_request(
    value: bytes | None,
    *,
    now: datetime,
    default_ttl_s: int = DEFAULT_TTL_S,
    max_ttl_s: int = MAX_TTL_S,
) -> CommandRequest | Rejection:
    """Validate one record value as it came from Kafka; never raises."""
    if value is None or not value:
        return Rejection("the record is empty")
    if len(value) > MAX_RECORD_BYTES:
        return Rejection(f"the record is over {MAX_RECORD_BYTES} bytes")
    try:
        record = loads_strict(value)
    except CommandRequestError as exc:
        return Rejection(f"the record is refused: {exc.reason}", *_ids_of(value))
    return validate_command_record(
        record, now=now, default_ttl_s=default_ttl_s, max_ttl_s=max_ttl_s
    )


def validate_command_record(
    record: object,
    *,
    now: datetime,
    default_ttl_s: int = DEFAULT_TTL_S,
    max_ttl_s: int = MAX_TTL_S,
) -> CommandRequest | Rejection:
    """Validate a decoded `command.request` record; never raises."""
    if not isinstance(record, dict):
        return Rejection("the record is not a JSON object")
    try:
        return _validate(record, now, default_ttl_s, max_ttl_s)
    except CommandRequestError as exc:
        return Rejection(exc.reason, *_seen_ids(record))


def loads_strict(data: bytes | str) -> Any:
    """Plain JSON from UTF-8 bytes or text; CommandRequestError for anything else.

    Lone surrogates (from `\\ud800` escapes) are not refused here: check_json_value does.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise CommandRequestError("not valid UTF-8") from None
    try:
        return json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            object_pairs_hook=_unique_keys,
        )
    except CommandRequestError:
        raise
    except RecursionError:
        raise CommandRequestError("nested too deeply") from None
    except ValueError:
        raise CommandRequestError("not JSON") from None


def check_json_value(value: object, *, field: str, max_depth: int = MAX_PARAMS_DEPTH) -> None:
    """Refuse anything JSON and UTF-8 would not take back as is (iterative: no recursion)."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if item is None or type(item) is bool:
            continue
        if type(item) is int:
            if not MIN_INT <= item <= MAX_INT:
                raise CommandRequestError(f"{field}: an integer is out of the 64-bit range")
        elif type(item) is float:
            if not math.isfinite(item):
                raise CommandRequestError(f"{field}: a number is not finite")
        elif type(item) is str:
            if has_surrogates(item):
                raise CommandRequestError(f"{field}: a text holds a lone surrogate")
        elif type(item) is list or type(item) is dict:
            if depth >= max_depth:
                raise CommandRequestError(f"{field}: nested deeper than {max_depth} levels")
            stack.extend((child, depth + 1) for child in _children(item, field))
        else:
            raise CommandRequestError(f"{field}: holds a value that is not JSON")


def _children(container: list[Any] | dict[Any, Any], field: str) -> list[Any]:
    if isinstance(container, list):
        return container
    for key in container:
        if type(key) is not str or has_surrogates(key):
            raise CommandRequestError(f"{field}: a key is not valid text")
    return list(container.values())


def _validate(
    record: dict[str, Any], now: datetime, default_ttl_s: int, max_ttl_s: int
) -> CommandRequest:
    for key, value in record.items():
        if type(key) is not str or has_surrogates(key):
            raise CommandRequestError("a key is not valid text")
        field = key if key in FIELDS else "a field"
        check_json_value(value, field=field, max_depth=MAX_PARAMS_DEPTH)
    version = record.get("v", 1)
    if type(version) is not int or version != 1:
        raise CommandRequestError("unsupported record version (v must be 1)")
    request_id = _text(record.get("request_id"), "request_id", MAX_REQUEST_ID)
    device_id = record.get("device_id")
    if type(device_id) is not str or not is_device_id(device_id):
        raise CommandRequestError("device_id must be 1 to 64 characters of A-Z a-z 0-9 . _ : -")
    command = _text(record.get("command"), "command", MAX_NAME)
    params = _params(record.get("params", {}))
    expires_at = _expiry(record, now, default_ttl_s, max_ttl_s)
    if expires_at <= now:
        raise CommandRequestError("the command expired before it arrived")
    return CommandRequest(request_id, device_id, command, params, expires_at)


def _text(value: object, field: str, limit: int) -> str:
    if type(value) is not str or not 1 <= len(value) <= limit or not is_plain_text(value):
        raise CommandRequestError(
            f"{field} must be 1 to {limit} characters of text, without control characters"
        )
    return value


def _params(value: object) -> dict[str, Any]:
    if type(value) is not dict:
        raise CommandRequestError("params must be a JSON object")
    encoded = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    if len(encoded.encode("utf-8")) > MAX_PARAMS_BYTES:
        raise CommandRequestError(f"params are over {MAX_PARAMS_BYTES} bytes once encoded")
    return value


def _expiry(record: dict[str, Any], now: datetime, default_s: int, max_s: int) -> datetime:
    if "ttl_s" in record and "expires_at" in record:
        raise CommandRequestError("give ttl_s or expires_at, not both")
    if "expires_at" in record:
        moment = parse_rfc3339(record["expires_at"])
        if moment > now + timedelta(seconds=max_s):
            raise CommandRequestError(f"expires_at is more than {max_s} s ahead")
        return moment
    ttl = record.get("ttl_s", default_s)
    if type(ttl) not in (int, float) or not math.isfinite(ttl):
        raise CommandRequestError("ttl_s must be a number of seconds")
    if not 0 < ttl <= max_s:
        raise CommandRequestError(f"ttl_s must be more than 0 and at most {max_s}")
    return now + timedelta(seconds=ttl)


def parse_rfc3339(value: object) -> datetime:
    """An RFC 3339 date-time with an offset, in UTC; CommandRequestError otherwise."""
    match = RFC3339.fullmatch(value) if type(value) is str else None
    if match is None:
        raise CommandRequestError("expires_at must be an RFC 3339 time with an offset")
    year, month, day, hour, minute, second, fraction, zulu, sign, oh, om = match.groups()
    try:
        offset = timedelta(hours=int(oh), minutes=int(om)) if zulu is None else timedelta()
        zone = timezone(-offset if sign == "-" else offset)
        micro = int((fraction or "0").ljust(6, "0")[:6])
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                          micro, tzinfo=zone)  # fmt: skip
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise CommandRequestError("expires_at is not a valid time") from None


def _refuse_constant(name: str) -> Any:
    raise CommandRequestError("NaN and Infinity are not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e999 reads as inf
        raise CommandRequestError("a number is too large for a float")
    return number


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record = dict(pairs)
    if len(record) != len(pairs):
        raise CommandRequestError("a key is repeated")
    return record


def _seen_ids(record: dict[Any, Any]) -> tuple[str | None, str | None]:
    """The ids a rejected record names, made safe to report."""
    request_id, device_id = record.get("request_id"), record.get("device_id")
    seen_request = None
    if type(request_id) is str and request_id:
        seen_request = clean_text(request_id, limit=MAX_REQUEST_ID)
    seen_device = device_id if type(device_id) is str and is_device_id(device_id) else None
    return seen_request, seen_device


def _ids_of(value: bytes) -> tuple[str | None, str | None]:
    """Best effort for a record refused before it was read: its ids, if a lenient read
    finds them (so the integrator can match the `rejected` status to what it sent)."""
    try:
        record = json.loads(value.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return None, None
    return _seen_ids(record) if isinstance(record, dict) else (None, None)


def request_record(
    *, request_id: str, device_id: str, command: str, params: dict[str, Any], ttl_s: int | None
) -> Record:
    """The `command.request` record of these values (unchecked: see validate_command_record)."""
    record: Record = {
        "v": VERSION,
        "request_id": request_id,
        "device_id": device_id,
        "command": command,
        "params": params,
    }
    if ttl_s is not None:
        record["ttl_s"] = ttl_s
    return record


def encode_params(params: Mapping[str, Any]) -> str:
    """Params as the JSON text that is stored and handed to the sandbox (compact UTF-8)."""
    return json.dumps(dict(params), ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def stored_params_json(body: str) -> str:
    """The params text of a stored body, cut out of it without decoding: the body was
    written by CommandRequest.body() and checked at claim (stored_params_valid); "{}"
    for a body without params."""
    if body.startswith(STORED_PREFIX) and body.endswith("}"):
        return body[len(STORED_PREFIX) : -1]
    return "{}"


def stored_params(body: str) -> dict[str, Any]:
    """The params of a stored body (CommandRequest.body()); {} when it holds no object."""
    try:
        stored = loads_strict(body)
    except CommandRequestError:
        return {}
    params = stored.get("params", {}) if isinstance(stored, dict) else {}
    return params if isinstance(params, dict) else {}


def stored_params_valid(body: str) -> bool:
    """True when a stored body is `{"params": {...}}` (that key only: its text is cut out
    as is) that passes the request rules."""
    try:
        stored = loads_strict(body)
        if type(stored) is not dict or type(stored.get("params", {})) is not dict:
            return False
        if set(stored) - {"params"}:
            return False
        check_json_value(stored.get("params", {}), field="params")
    except CommandRequestError:
        return False
    return True
