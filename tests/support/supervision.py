"""Holding a supervised loop down for as long as a test needs to see it down.

A failed loop is reported down while its supervisor waits out the restart delay. A test
that polls a health probe against a fixed delay races the clock on a loaded machine;
`HeldPause` replaces the supervisor's pause so that the loop stays down until the test
releases it, however slow the probe is.
"""

from __future__ import annotations

import asyncio


class HeldPause:
    """A supervisor pause that waits for `release()` instead of for a delay."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._released = asyncio.Event()

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await self._released.wait()

    def release(self) -> None:
        """Let every held (and any later) restart go ahead."""
        self._released.set()
