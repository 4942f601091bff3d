"""Raw uplinks as a replay reads them, and what was published for them at the time."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from preservarium.ids import is_device_id
from preservarium.kafka_records import decode_record
from preservarium.sandbox_client import ContactInput

# The gateway's refusal of a route contact's identity: such a contact was never delivered.
DEVICE_MISMATCH = "device_mismatch"


@dataclass(frozen=True, slots=True)
class RawUplink:
    """One `uplink.raw` record, checked."""

    id: str
    received_at: str
    device_id: str | None
    device_type: str
    method: str
    path: str
    confirmable: bool
    payload: bytes
    payload_b64: str

    @property
    def routed(self) -> bool:
        """True for a route contact: its device was named by identify(), not by the path."""
        return self.device_id is None

    def contact(self, attributes_json: str = "") -> ContactInput:
        """The contact as the parser saw it (the raw record keeps no Uri-Query), with the
        device's attributes as the registry has them now and the original uplink's id."""
        return ContactInput(
            payload=self.payload, device_type=self.device_type, device_id=self.device_id,
            path=self.path, method=self.method, confirmable=self.confirmable,
            received_at=_unix_seconds(self.received_at), attributes_json=attributes_json,
            uplink_id=self.id,
        )  # fmt: skip


def _unix_seconds(text: str) -> int:
    try:
        return int(datetime.fromisoformat(text).timestamp())
    except ValueError:
        return 0


def _text(record: dict[str, Any], name: str) -> str | None:
    value = record.get(name)
    return value if isinstance(value, str) else None


def raw_uplink(value: bytes | None) -> RawUplink | None:
    """The raw uplink a record holds, or None for a record that is not one."""
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
    return RawUplink(
        id=uplink_id, received_at=_text(record, "received_at") or "", device_id=device_id,
        device_type=device_type, method=_text(record, "method") or "POST",
        path=_text(record, "path") or "", confirmable=record.get("confirmable") is not False,
        payload=payload, payload_b64=payload_b64,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Original:
    """What the gateway published for an uplink at the time (`uplink.parsed` or `.failed`)."""

    ok: bool
    device_id: str | None
    record: dict[str, Any]

    @property
    def refused(self) -> bool:
        """True when the gateway refused the contact's identity: it was never delivered."""
        error = self.record.get("error")
        return not self.ok and isinstance(error, dict) and error.get("kind") == DEVICE_MISMATCH


def replay_stamp(record: dict[str, Any]) -> dict[str, Any] | None:
    """The `replay` object of a replayed record, or None for an original one."""
    stamp = record.get("replay")
    return stamp if isinstance(stamp, dict) else None
