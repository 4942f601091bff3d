"""A clock tests step forward instead of sleeping through a product's wait."""

from __future__ import annotations

import time
from collections.abc import Callable


class SteppedClock:
    """Real time plus whatever the test has stepped: `advance(s)` makes `s` seconds pass at
    once for the object holding this clock, and only for it. Time still runs on its own,
    so a shared server that holds it behaves as usual for the tests that never step it."""

    def __init__(self, base: Callable[[], float] = time.monotonic) -> None:
        self._base = base
        self._offset = 0.0

    def __call__(self) -> float:
        return self._base() + self._offset

    def advance(self, seconds: float) -> None:
        """Make `seconds` pass now."""
        if seconds < 0:
            raise ValueError("a clock only steps forward")
        self._offset += seconds
