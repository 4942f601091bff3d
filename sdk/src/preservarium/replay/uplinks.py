"""What was published for an uplink at the time, as a replay reads it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from preservarium.contract.kinds import ErrorKind


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
        mismatch = isinstance(error, dict) and error.get("kind") == ErrorKind.DEVICE_MISMATCH
        return not self.ok and mismatch


def replay_stamp(record: dict[str, Any]) -> dict[str, Any] | None:
    """The `replay` object of a replayed record, or None for an original one."""
    stamp = record.get("replay")
    return stamp if isinstance(stamp, dict) else None
