"""The clock collaborator: where objects that measure time take it from.

Objects that expire, bench, budget or order things by time take a keyword-only `clock`
(default `time.monotonic`, or `time.time` where the value is stored as a wall time), so
a test steps time forward instead of sleeping through it.
"""

from __future__ import annotations

from typing import Protocol


class Clock(Protocol):
    """A source of seconds: `time.monotonic` and `time.time` are the real ones."""

    def __call__(self) -> float:
        """The time now, in seconds."""
        ...
