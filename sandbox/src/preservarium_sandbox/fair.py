"""Turns on the worker pool, handed out round robin across parser versions.

A first-come queue lets the version with the most calls waiting take every worker: a
tenant whose parser runs close to its deadline, with many devices, would make every
other tenant's contacts wait behind all of its own. Here each version waits in its own
queue, and a freed turn goes to the next version in the rotation, so another version's
call waits for at most one turn of each version ahead of it. While turns are free
nobody waits, and one version alone may use them all (nothing is reserved and idle).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import AsyncIterator


class FairTurns:
    """At most `size` holders at once; waiting callers are served round robin by key."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiting: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()

    @contextlib.asynccontextmanager
    async def turn(self, key: str) -> AsyncIterator[None]:
        """Hold one turn for a call of version `key`."""
        await self._acquire(key)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, key: str) -> None:
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, deque()).append(granted)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self._release()  # the turn came as the caller left: pass it on
            else:
                self._withdraw(key, granted)
            raise

    def _withdraw(self, key: str, granted: asyncio.Future[None]) -> None:
        queue = self._waiting.get(key)
        if queue is None:
            return
        with contextlib.suppress(ValueError):
            queue.remove(granted)
        if not queue:
            del self._waiting[key]

    def _release(self) -> None:
        while self._waiting:
            key, queue = next(iter(self._waiting.items()))
            granted = queue.popleft()
            if queue:
                self._waiting.move_to_end(key)  # its next call waits for the others
            else:
                del self._waiting[key]
            if not granted.done():
                granted.set_result(None)
                return
        self._free += 1
