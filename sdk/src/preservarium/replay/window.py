"""The time window of a replay: RFC 3339 timestamps or durations back from now (`2h`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from preservarium.replay.errors import BAD_WINDOW, ReplayError

RELATIVE = re.compile(r"^(\d{1,9})([smhdw])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
DEFAULT_SINCE = "24h"


@dataclass(frozen=True, slots=True)
class Window:
    """[since, until], inclusive, UTC."""

    since: datetime
    until: datetime

    @property
    def since_ms(self) -> int:
        """`since` as Kafka timestamps count (Unix milliseconds)."""
        return int(self.since.timestamp() * 1000)

    @property
    def until_ms(self) -> int:
        """`until` in Unix milliseconds."""
        return int(self.until.timestamp() * 1000)

    def holds(self, timestamp_ms: int) -> bool:
        """True when a record written at `timestamp_ms` is in the window."""
        return self.since_ms <= timestamp_ms <= self.until_ms


def moment(text: str, *, now: datetime, name: str) -> datetime:
    """An RFC 3339 timestamp (a zone is required) or a duration back from `now`:
    `45s`, `30m`, `2h`, `7d`, `2w`. ReplayError (bad_window) for anything else."""
    text = text.strip()
    relative = RELATIVE.match(text)
    if relative:
        amount, unit = relative.groups()
        return now - timedelta(**{UNITS[unit]: int(amount)})
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ReplayError(
            f"{name} {text!r} is neither RFC 3339 (2026-11-30T08:00:00Z) nor a duration "
            "back from now (45s, 30m, 2h, 7d, 2w)",
            kind=BAD_WINDOW,
        ) from None
    if parsed.tzinfo is None:
        raise ReplayError(f"{name} {text!r} has no time zone: add Z or +HH:MM", kind=BAD_WINDOW)
    return parsed.astimezone(UTC)


def window(since: str | None, until: str | None, *, now: datetime) -> Window:
    """The window the arguments name (since: 24 h ago by default; until: now)."""
    start = moment(since or DEFAULT_SINCE, now=now, name="--since")
    end = now if until is None else moment(until, now=now, name="--until")
    if end < start:
        raise ReplayError(f"--until ({end:%Y-%m-%dT%H:%M:%SZ}) is before --since "
                          f"({start:%Y-%m-%dT%H:%M:%SZ})", kind=BAD_WINDOW)  # fmt: skip
    return Window(start, min(end, now))
