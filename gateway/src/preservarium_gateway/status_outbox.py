"""`command.status` records held until Kafka acknowledges them, in the order they were made.

A status is the integrator's only word on what became of a command, and the database
has moved on when it is made (the row is `sent`, `expired`, ...): a record published
once and dropped on failure is lost for good. `StatusOutbox` keeps each record in
memory until the broker acknowledges it, retrying with a backoff through an outage,
oldest first. What it holds is bounded (`MAX_HELD`; past it new records are dropped and
counted) and lives as long as the process: a gateway that dies during an outage loses
the statuses it held.

A status record is small by construction (ids and a reason capped, a command's bytes at
most 1 KiB), so a publish that fails is the broker's failure, never the record's: the
head of the queue cannot be a record that never goes through.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque

from preservarium.lifecycle import AsyncLifecycle
from preservarium.supervisor import Supervisor

from preservarium_gateway.errors import PublishError
from preservarium_gateway.types import RecordPublisher

log = logging.getLogger("preservarium.gateway.status_outbox")
MAX_HELD = 100_000
BATCH = 100
RETRY_MIN_S = 0.2
RETRY_MAX_S = 5.0
STOP_FLUSH_S = 5.0


class StatusOutbox(AsyncLifecycle):
    """Publishes `command.status` records, each until acknowledged; start()/stop()."""

    def __init__(
        self,
        publisher: RecordPublisher,
        *,
        topic: str,
        max_held: int = MAX_HELD,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._publisher = publisher
        self._topic = topic
        self._max_held = max_held
        self._supervisor = supervisor or Supervisor()
        self._held: deque[tuple[bytes, bytes | None]] = deque()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._held)

    def put(self, value: bytes, key: bytes | None) -> None:
        """Queue one record; it is published as soon as the broker takes it."""
        if len(self._held) >= self._max_held:
            # Dropping the newest keeps the head (being published) where it is.
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("status records dropped", extra={"dropped": self.dropped})
            return
        self._held.append((value, key))
        self._ready.set()

    async def start(self) -> None:
        """Publish in the background."""
        self._task = self._supervisor.spawn("status-outbox", self._run)

    async def stop(self) -> None:
        """Publish what is held (bounded wait), then stop; idempotent."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), STOP_FLUSH_S)
        if self._held:
            log.warning("status records not published", extra={"held": len(self._held)})

    async def _run(self) -> None:
        delay = RETRY_MIN_S
        while True:
            await self._ready.wait()
            if await self.flush():
                delay = RETRY_MIN_S
                continue
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    async def flush(self) -> bool:
        """Publish the held records, oldest first; False at the first one not taken
        (it and those after it stay held; some after it may then go out twice)."""
        while self._held:
            batch = list(itertools.islice(self._held, BATCH))
            results = await asyncio.gather(
                *(self._publisher.publish(self._topic, value, key) for value, key in batch),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, PublishError):
                    return False
                if isinstance(result, Exception):  # a bug, not the broker: never retried
                    self.dropped += 1
                    log.error("status record dropped", exc_info=result)
                self._held.popleft()
        self._ready.clear()
        return True
