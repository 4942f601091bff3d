"""A bound on how many uplinks a replay sends to the sandbox per second."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

DEFAULT_RATE = 200


class Pace:
    """A token bucket of `rate` tokens per second holding at most one second of them."""

    def __init__(self, rate: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate < 1:
            raise ValueError("the rate must be at least 1 per second")
        self.rate = rate
        self._clock = clock
        self._tokens = float(rate)
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.rate), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def take(self, count: int) -> None:
        """Wait until `count` uplinks may go (a count over the rate takes several seconds)."""
        left = count
        while left > 0:
            self._refill()
            granted = min(left, int(self._tokens))
            self._tokens -= granted
            left -= granted
            if left > 0:
                await asyncio.sleep(min(left, self.rate) / self.rate)
