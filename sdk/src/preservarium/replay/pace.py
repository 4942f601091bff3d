"""How many uplinks a replay sends to the sandbox per second: at most `--rate`, and less
while live traffic needs the machine.

The rate is halved (not below `--rate` / `FLOOR_DIVISOR`) after a batch that shows
either sign that others need the machine:

- the sandbox says a device waited behind the replay: a live call had to wait for a
  worker while background calls held one (`ParseResponse.live_waited`, on any answer of
  the batch). The sandbox sees that whatever load was there before the replay started;
- the batch took more than `SLOWER_THAN` times the fastest seen per uplink, as
  LEDBAT-style scavenger transports watch queueing delay: a replayed uplink also takes
  longer when the machine's CPU is short, which the sandbox's lane cannot see. This
  baseline is the replay's own, so it catches load that grows while the replay runs.

While batches show neither, the rate climbs back by a tenth of `--rate` per batch. A
replay on an idle machine runs at `--rate`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

DEFAULT_RATE = 200
# A batch this many times slower per uplink than the best seen means others need the
# machine: twice is well past the jitter of an idle one.
SLOWER_THAN = 2.0
# The replay never yields below this fraction of its rate: it always ends.
FLOOR_DIVISOR = 8
# The best time per uplink is forgotten slowly (a fraction per batch), so a baseline
# measured in a lucky moment does not hold the replay down for ever.
FORGET = 0.02


class Pace:
    """A token bucket of `rate` tokens per second holding at most one second of them;
    `rate` moves between `ceiling` / FLOOR_DIVISOR and `ceiling` (see the module)."""

    def __init__(
        self, rate: int, *, adaptive: bool = True, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate < 1:
            raise ValueError("the rate must be at least 1 per second")
        self.ceiling = rate
        self.rate = float(rate)
        self.adaptive = adaptive
        self.yielded = 0  # how many times the rate was halved for others
        self.yielded_to_live = 0  # of those, for a device that waited behind the replay
        self._floor = max(1.0, rate / FLOOR_DIVISOR)
        self._best: float | None = None
        self._clock = clock
        self._tokens = float(rate)
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.rate, self._tokens + (now - self._stamp) * self.rate)
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

    def observe(self, count: int, seconds: float, *, live_waited: int = 0) -> None:
        """`count` uplinks were answered in `seconds` (their batch), while live calls
        waited behind background work `live_waited` times (the most any answer of the
        batch reported): yield or climb."""
        if not self.adaptive or count < 1 or seconds <= 0:
            return
        each = seconds / count
        best = each if self._best is None else min(each, self._best * (1 + FORGET))
        self._best = best
        if live_waited > 0 or each > SLOWER_THAN * best:
            self.rate = max(self._floor, self.rate / 2)
            self.yielded += 1
            self.yielded_to_live += int(live_waited > 0)
        else:
            self.rate = min(float(self.ceiling), self.rate + self.ceiling / 10)
