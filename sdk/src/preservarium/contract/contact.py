"""One device contact: the value the gateway accepts, records, and hands to the parser.

The same fields are the raw record's (`id`, `received_at`, `device_id`, `device_type`,
`method`, `path`, `confirmable`, `remote`, the payload) and the parser's `metadata` (with
the Uri-Query and the device's attributes besides): written once, here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

# received_at of a contact nobody stamped (a parser test without a time): Unix time 0.
EPOCH = datetime.fromtimestamp(0, UTC)


@dataclass(frozen=True, slots=True)
class Contact:
    """One device contact, as the records describe it and the parser sees it."""

    payload: bytes
    device_type: str
    # None for a route contact until identify() names its device.
    device_id: str | None = None
    path: str = ""
    method: str = "POST"
    confirmable: bool = True
    received_at: datetime = EPOCH
    query: Mapping[str, str] = field(default_factory=dict)
    # `ip:port` of the sender ("" when there is none: a test, a replay).
    remote: str = ""
    # The raw uplink record's id (None for a contact that is not recorded: a parser test).
    id: str | None = None
    # The device's attributes as compact JSON ("" is {}): the gateway's cache holds them so.
    attributes_json: str = ""

    @property
    def received_at_s(self) -> int:
        """`received_at` in Unix seconds, as the parser's metadata gives it."""
        return int(self.received_at.timestamp())
