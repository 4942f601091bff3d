"""The lifecycle every long-lived part shares: start(), stop(), and `async with`."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class AsyncLifecycle:
    """Base of servers, clients, consumers and loops: `async with` starts and stops them.

    Subclasses implement start() and an idempotent stop().
    """

    async def start(self) -> None:
        """Acquire resources and start background work."""
        raise NotImplementedError

    async def stop(self) -> None:
        """Release everything start() acquired; safe to call twice."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
