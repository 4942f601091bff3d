"""Waiting for what background work makes true, instead of sleeping for a guessed time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Return once `condition()` holds; TimeoutError after `timeout_s`. The timeout is
    generous on purpose: a loaded machine makes background work slow, never wrong."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 (a flag of a server: no event to wait on)
            await asyncio.sleep(0.01)


class LoopStalls:
    """How long the running event loop went without turning while a block ran: a ticker
    wakes every 10 ms and notes each gap. `longest` and `took` are read after the block."""

    def __init__(self) -> None:
        self.gaps: list[float] = [0.0]
        self.took = 0.0
        self._done = asyncio.Event()
        self._ticking: asyncio.Task[None] | None = None
        self._started = 0.0

    @property
    def longest(self) -> float:
        """The longest gap between two turns of the loop."""
        return max(self.gaps)

    async def __aenter__(self) -> LoopStalls:
        loop = asyncio.get_running_loop()
        self._ticking = asyncio.create_task(self._tick())
        self._started = loop.time()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.took = asyncio.get_running_loop().time() - self._started
        self._done.set()
        if self._ticking is not None:
            await self._ticking

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while not self._done.is_set():
            await asyncio.sleep(0.01)
            now = loop.time()
            self.gaps.append(now - last)
            last = now
