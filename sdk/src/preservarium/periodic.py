"""A background job run every few seconds, stopped between runs rather than in the middle.

Cancelling a task in the middle of a database query makes the driver log an error and
can leave a connection half-used; stop() lets the current run finish, then ends the loop.
A run that fails with one of our errors is logged and the loop goes on; anything else
is a bug: the loop's supervisor logs it, counts it and restarts the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from preservarium.errors import PreservariumError
from preservarium.supervisor import Supervisor


class Periodic:
    """Runs `job` every `interval_s` seconds until stopped; failures are logged, not fatal."""

    def __init__(
        self,
        job: Callable[[], Awaitable[None]],
        *,
        interval_s: float,
        name: str,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._job = job
        self._supervisor = supervisor or Supervisor()
        self.interval_s = interval_s  # read before each wait: may be changed while running
        self._name = name
        self._stopping = asyncio.Event()
        self._nudge = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._log = logging.getLogger(f"preservarium.{name}")

    def wake(self) -> None:
        """Run the job now instead of at the end of the current wait."""
        self._nudge.set()

    def start(self) -> None:
        """Start the loop (the first run comes after one interval)."""
        self._stopping.clear()
        self._task = self._supervisor.spawn(self._name, self._loop)

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Let the current run finish, then end; idempotent."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        self._nudge.set()
        try:
            await asyncio.wait_for(task, timeout_s)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudge.wait(), self.interval_s)
            self._nudge.clear()
            if self._stopping.is_set():
                return
            try:
                await self._job()
            except PreservariumError as exc:
                self._log.warning("%s failed", self._name, extra={"error": str(exc)})
