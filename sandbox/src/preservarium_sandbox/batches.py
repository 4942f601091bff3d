"""Jobs waiting for a worker, kept per parser version, taken a batch at a time.

While every worker is busy, calls of the same parser version queue here, and one turn
(preservarium_sandbox.fair) is asked for on the version's behalf; when it comes, the
jobs waiting are taken together, up to MAX_BATCH_JOBS, and handed to one worker in one
frame. Idle, a job goes alone and at once; busy, batches grow with the load; while other
workers are free, the jobs waiting are shared out between them rather than all put on
one (`share`). A batch never mixes versions, so one tenant's runaway parser can only
ever delay calls of that same version; nor lanes (fair.py): a replay's jobs never ride in
a device's frame, so they never take a live turn.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable
from typing import Any

from preservarium_sandbox.limits import MAX_BATCH_JOBS
from preservarium_sandbox.worker_process import CallResult

# Jobs queue, and ask for turns, per parser version and lane: (sha, background).
QueueKey = tuple[str, bool]


class Pending:
    """One job between the caller's `run` and its answer."""

    __slots__ = ("admit", "future", "item", "job", "payload", "sent", "withdrawn")

    def __init__(
        self, job: Any, item: bytes, payload: bytes, admit: Callable[[], bool] | None
    ) -> None:
        self.job = job
        self.item = item  # the job's encoded JSON object in a job frame
        self.payload = payload
        self.admit = admit
        self.future: asyncio.Future[CallResult] = asyncio.get_running_loop().create_future()
        self.sent = False  # reached a worker once: it runs to its answer from then on
        self.withdrawn = False  # its caller gave up before it was sent

    @property
    def sha(self) -> str:
        """The parser version."""
        sha: str = self.job.sha
        return sha

    @property
    def key(self) -> QueueKey:
        """The queue it waits in: its version, in its lane."""
        return (self.job.sha, bool(self.job.background))

    def answer(self, result: CallResult) -> None:
        """Resolve the caller's call with `result` (once)."""
        if not self.future.done():
            self.future.set_result(result)

    def fail(self, error: BaseException) -> None:
        """Resolve the caller's call with `error` (once)."""
        if not self.future.done():
            self.future.set_exception(error)


class VersionQueues:
    """The jobs waiting for a worker, per parser version and lane, in arrival order."""

    def __init__(self) -> None:
        self._queues: dict[QueueKey, deque[Pending]] = {}

    def __len__(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    def add(self, pending: Pending, *, first: bool = False) -> None:
        """Queue `pending` (`first`: ahead of the others, a job re-run after its worker
        was lost: it has waited longest)."""
        queue = self._queues.setdefault(pending.key, deque())
        if first:
            queue.appendleft(pending)
        else:
            queue.append(pending)

    def remove(self, pending: Pending) -> None:
        """Forget a job that will not be taken (its caller gave up)."""
        queue = self._queues.get(pending.key)
        if queue is None:
            return
        try:
            queue.remove(pending)
        except ValueError:
            return
        if not queue:
            del self._queues[pending.key]

    def waiting(self, key: QueueKey) -> int:
        """How many jobs wait in queue `key`."""
        return len(self._queues.get(key, ()))

    def take(
        self, key: QueueKey, limit: int, fits: Callable[[list[Pending], Pending], bool]
    ) -> list[Pending]:
        """Up to `limit` jobs of queue `key`, oldest first, while `fits` says the next
        still fits the batch (the first always does)."""
        queue = self._queues.get(key)
        batch: list[Pending] = []
        while queue and len(batch) < limit and (not batch or fits(batch, queue[0])):
            batch.append(queue.popleft())
        if queue is not None and not queue:
            del self._queues[key]
        return batch

    def drain(self) -> list[Pending]:
        """Every waiting job, removed (the pool is stopping)."""
        waiting = [pending for queue in self._queues.values() for pending in queue]
        self._queues.clear()
        return waiting


def share(waiting: int, free_workers: int) -> int:
    """How many of `waiting` jobs one batch takes when `free_workers` other workers are
    free: an even share (so a burst on an idle pool runs on every worker at once), at
    most MAX_BATCH_JOBS."""
    return max(1, min(MAX_BATCH_JOBS, math.ceil(waiting / (1 + max(0, free_workers)))))
