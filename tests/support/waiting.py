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
