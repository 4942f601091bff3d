"""The uplink records (`uplink.raw`, `uplink.parsed`, `uplink.failed`; docs/records.md):
built from a Contact and plain values, and the raw record read back. No I/O here."""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from preservarium.contract.contact import EPOCH, Contact
from preservarium.contract.encoding import VERSION, Record, b64, decode_record, encode, rfc3339
from preservarium.ids import is_device_id


def raw_record(contact: Contact) -> Record:
    """`uplink.raw`."""
    return {
        "v": VERSION,
        "id": contact.id,
        "received_at": rfc3339(contact.received_at),
        "device_id": contact.device_id,
        "device_type": contact.device_type,
        "method": contact.method,
        "path": contact.path,
        "confirmable": contact.confirmable,
        "remote": contact.remote,
        "payload_b64": b64(contact.payload),
    }


def parsed_record(
    contact: Contact,
    *,
    device_id: str | None,
    parser: dict[str, Any],
    data_json: bytes,
    warnings: list[str],
    printed: str = "",
) -> bytes:
    """`uplink.parsed`, with the parser's data spliced in as the sandbox encoded it;
    `printed` (what the parser print()ed, bounded by the sandbox) only when there is some."""
    head: Record = {
        "v": VERSION,
        "id": contact.id,
        "received_at": rfc3339(contact.received_at),
        "device_id": device_id,
        "device_type": contact.device_type,
        "parser": parser,
        "warnings": warnings,
    }
    if printed:
        head["printed"] = printed
    # The sandbox already checked and encoded `data`: splice it instead of re-encoding.
    return encode(head)[:-1] + b',"data":' + (data_json or b"{}") + b"}"


def failed_record(
    contact: Contact,
    *,
    device_id: str | None,
    kind: str,
    message: str,
    line: int | None,
    printed: str = "",
) -> Record:
    """`uplink.failed`; `printed` only when the parser print()ed something."""
    record: Record = {
        "v": VERSION,
        "id": contact.id,
        "received_at": rfc3339(contact.received_at),
        "device_id": device_id,
        "device_type": contact.device_type,
        "payload_b64": b64(contact.payload),
        "error": error_object(kind, message, line),
    }
    if printed:
        record["printed"] = printed
    return record


def error_object(kind: str, message: str, line: int | None) -> Record:
    """The `error` of an `uplink.failed` record: `{kind, message, line}` (the kind as plain
    text: a record holds JSON values only, and a replay compares them by type too)."""
    return {"kind": str(kind), "message": message, "line": line}


def replayed_record(
    *,
    received_at: str,
    device_id: str | None,
    device_type: str,
    replay: Record,
    parser: Record,
    data: Any = None,
    warnings: list[str] | None = None,
    payload_b64: str = "",
    error: Record | None = None,
) -> Record:
    """A replayed `uplink.parsed` record (`data`, `warnings`), or `uplink.failed` one
    (`error`, `payload_b64`): a new id, the original's `received_at` as it was written,
    and `replay: {id, of}` naming the replay and the original uplink."""
    head: Record = {
        "v": VERSION, "id": uuid.uuid4().hex, "received_at": received_at,
        "device_id": device_id, "device_type": device_type, "replay": replay, "parser": parser,
    }  # fmt: skip
    if error is None:
        return {**head, "data": data, "warnings": warnings or []}
    return {**head, "payload_b64": payload_b64, "error": error}


@dataclass(frozen=True, slots=True)
class RawUplink:
    """One `uplink.raw` record, checked: the contact it recorded, and the texts a replay
    copies into what it publishes (`received_at`, `payload_b64`) as they were written."""

    # The recorded contact, its `id` the uplink's. The raw record keeps no Uri-Query, no
    # sender (`remote` is "") and no attributes (see contact()).
    recorded: Contact
    received_at: str
    payload_b64: str

    @property
    def id(self) -> str:
        """The uplink's id (read_raw never reads a record without one)."""
        return self.recorded.id or ""

    @property
    def routed(self) -> bool:
        """True for a route contact: its device was named by identify(), not by the path."""
        return self.recorded.device_id is None

    def contact(self, attributes_json: str = "") -> Contact:
        """The contact as the parser saw it (the raw record keeps no Uri-Query), with the
        device's attributes as the registry has them now and the original uplink's id."""
        return replace(self.recorded, attributes_json=attributes_json)


def _moment(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return EPOCH


def _text(record: dict[str, Any], name: str) -> str | None:
    value = record.get(name)
    return value if isinstance(value, str) else None


def read_raw(value: bytes | None) -> RawUplink | None:
    """The raw uplink a record value holds, or None for a record that is not one."""
    record = decode_record(value)
    if record is None:
        return None
    uplink_id, device_type = _text(record, "id"), _text(record, "device_type")
    payload_b64, device_id = _text(record, "payload_b64"), record.get("device_id")
    if not uplink_id or not device_type or payload_b64 is None:
        return None
    if device_id is not None and not (isinstance(device_id, str) and is_device_id(device_id)):
        return None
    try:
        payload = base64.b64decode(payload_b64, validate=True)
    except (binascii.Error, ValueError):
        return None
    received_at = _text(record, "received_at") or ""
    recorded = Contact(
        payload=payload, device_type=device_type, device_id=device_id,
        path=_text(record, "path") or "", method=_text(record, "method") or "POST",
        confirmable=record.get("confirmable") is not False, received_at=_moment(received_at),
        id=uplink_id,
    )  # fmt: skip
    return RawUplink(recorded, received_at=received_at, payload_b64=payload_b64)
