"""Turns on the worker pool: live calls before background ones, round robin by parser
version within each lane.

A first-come queue lets the version with the most calls waiting take every worker: a
tenant whose parser runs close to its deadline, with many devices, would make every
other tenant's contacts wait behind all of its own. Here each version waits in its own
queue, and a freed turn goes to the next version in the rotation, so another version's
call waits for at most one turn of each version ahead of it. While turns are free
nobody waits, and one version alone may use them all (nothing is reserved and idle).

Background calls (a replay of stored uplinks) wait in a lane of their own: a freed turn
goes to them only when no live call waits, so a replay fills the workers devices leave
idle and never queues ahead of a device. Held turns are not taken back, so a live call
arriving while background calls hold every worker would still wait for one of them to
end (up to a parser's whole deadline): `background_cap` bounds how many turns background
calls hold at once (`leave_one_for_live`), so a live call finds a worker free or waits
only behind other live calls.

What the lane cannot undo is the turn a background call already holds: a live call that
must wait while background calls hold turns might have had one of them. FairTurns counts
those calls (`live_delayed`), and the service tells background callers how many there
were during their call (ParseResponse.live_waited), so that a replay slows down
(preservarium.replay.pace) while it delays devices, whatever load was there before it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import AsyncIterator

LIVE, BACKGROUND = "live", "background"


def leave_one_for_live(size: int) -> int:
    """How many of `size` turns background calls may hold: all but one (one at least,
    so that a replay still progresses on a pool of one worker)."""
    return max(1, size - 1)


class _Lane:
    """The callers of one lane that wait for a turn, a queue per version, round robin."""

    def __init__(self) -> None:
        self.waiting: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()

    def __bool__(self) -> bool:
        return bool(self.waiting)

    def join(self, key: str, granted: asyncio.Future[None]) -> None:
        self.waiting.setdefault(key, deque()).append(granted)

    def withdraw(self, key: str, granted: asyncio.Future[None]) -> None:
        queue = self.waiting.get(key)
        if queue is None:
            return
        with contextlib.suppress(ValueError):
            queue.remove(granted)
        if not queue:
            del self.waiting[key]

    def grant_next(self) -> bool:
        """Hand a turn to the next waiting caller in the rotation; False if none took it."""
        while self.waiting:
            key, queue = next(iter(self.waiting.items()))
            granted = queue.popleft()
            if queue:
                self.waiting.move_to_end(key)  # its next call waits for the others
            else:
                del self.waiting[key]
            if not granted.done():
                granted.set_result(None)
                return True
        return False


class FairTurns:
    """At most `size` holders at once, of which at most `background_cap` background
    ones (None: no cap); live callers that wait are served before background ones, and
    within a lane callers are served round robin by key."""

    def __init__(self, size: int, *, background_cap: int | None = None) -> None:
        if background_cap is not None and background_cap < 1:
            raise ValueError("background calls need at least one turn")
        self._free = size
        self._cap = size if background_cap is None else min(size, background_cap)
        self._background_held = 0
        self._live_delayed = 0
        self._live = _Lane()
        self._background = _Lane()

    @property
    def background_held(self) -> int:
        """Turns held by background calls now."""
        return self._background_held

    @property
    def live_delayed(self) -> int:
        """How many live callers so far had to wait for a turn while background calls
        held at least one (each might have had that turn): only ever grows."""
        return self._live_delayed

    @contextlib.asynccontextmanager
    async def turn(self, key: str, *, background: bool = False) -> AsyncIterator[None]:
        """Hold one turn for a call of version `key` (in the background lane if asked)."""
        await self._acquire(key, background)
        try:
            yield
        finally:
            self._release(background)

    async def _acquire(self, key: str, background: bool) -> None:
        if self._free > 0 and self._may_take(background):
            self._free -= 1
            self._background_held += int(background)
            return
        if not background and self._background_held:
            self._live_delayed += 1
        lane = self._background if background else self._live
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lane.join(key, granted)
        try:
            await granted  # the grant counted the turn (and its lane) for us
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self._release(background)  # the turn came as the caller left: pass it on
            else:
                lane.withdraw(key, granted)
            raise

    def _may_take(self, background: bool) -> bool:
        """Whether a caller may take a free turn at once (no one of its rank waits)."""
        if not background:
            return not self._live
        return not self._live and not self._background and self._background_held < self._cap

    def _release(self, background: bool) -> None:
        self._background_held -= int(background)
        if self._live.grant_next():
            return
        if self._background_held < self._cap and self._background.grant_next():
            self._background_held += 1
            return
        self._free += 1
