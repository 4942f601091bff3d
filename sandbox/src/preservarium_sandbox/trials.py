"""TestParser's own lane: untested source never runs on the workers that serve live traffic.

A small pool of its own; one call per worker at a time, with a bounded wait for a turn
(then a clear `sandbox_unavailable` answer); a memory of sources that recently cost a
worker (answered at once with the failure they caused); and a cheap static pre-scan that
refuses sources whose compile cost a bound already shows.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable

from preservarium.contract.kinds import ErrorKind
from preservarium.lifecycle import AsyncLifecycle

from preservarium_sandbox.engine.errors import ScriptFailure
from preservarium_sandbox.limits import Limits, TrialLimits
from preservarium_sandbox.outcome import Outcome, read_answer
from preservarium_sandbox.pool import Job, WorkerPool
from preservarium_sandbox.quarantine import COSTLY
from preservarium_sandbox.source_scan import scan_source

BUSY = ScriptFailure(
    ErrorKind.SANDBOX_UNAVAILABLE, "the parser test sandbox is busy; try again shortly"
)


class FailureMemory:
    """Per source hash: the failure that cost a worker, kept for a while (bounded LRU)."""

    def __init__(
        self, *, keep_s: float, entries: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._keep_s = keep_s
        self._entries = entries
        self._clock = clock
        self._failures: OrderedDict[str, tuple[float, ScriptFailure]] = OrderedDict()

    def recall(self, sha: str) -> ScriptFailure | None:
        """The remembered failure of `sha`, if it is recent."""
        found = self._failures.get(sha)
        if found is None:
            return None
        until, failure = found
        if until <= self._clock():
            del self._failures[sha]
            return None
        return failure

    def remember(self, sha: str, failure: ScriptFailure) -> None:
        """Answer `sha` with `failure` for the next while."""
        self._failures[sha] = (self._clock() + self._keep_s, failure)
        self._failures.move_to_end(sha)
        while len(self._failures) > self._entries:
            self._failures.popitem(last=False)


class TrialRunner(AsyncLifecycle):
    """Runs TestParser jobs on a pool of their own, never on the live workers."""

    def __init__(self, *, pool: WorkerPool, limits: Limits, trial: TrialLimits) -> None:
        self.pool = pool
        self._limits = limits
        self._trial = trial
        self._turns = asyncio.Semaphore(trial.workers)
        self._failures = FailureMemory(
            keep_s=trial.remember_failures_s, entries=trial.remembered_sources
        )
        self._scanned: OrderedDict[str, None] = OrderedDict()  # hashes that passed the scan

    async def start(self) -> None:
        """Start the lane's workers."""
        await self.pool.start()

    async def stop(self) -> None:
        """Stop the lane's workers; idempotent."""
        await self.pool.stop()

    async def run(self, job: Job) -> Outcome:
        """The outcome of one test call (a remembered or busy answer when it cannot run)."""
        remembered = self._failures.recall(job.sha)
        if remembered is not None:
            return Outcome(failure=remembered)
        try:
            async with asyncio.timeout(self._trial.max_wait_s):
                await self._turns.acquire()
        except TimeoutError:
            return Outcome(failure=BUSY)
        try:
            return await self._run_turn(job)
        finally:
            self._turns.release()

    async def _run_turn(self, job: Job) -> Outcome:
        refusal = await self._scan(job)
        if refusal is not None:
            self._failures.remember(job.sha, refusal)
            return Outcome(failure=refusal)
        answer = await self.pool.run(job)
        outcome = read_answer(answer, limits=self._limits, has_contact=job.contact is not None)
        failure = outcome.failure
        if failure is not None and (failure.kind in COSTLY or outcome.worker_replaced):
            self._failures.remember(job.sha, failure)
        return outcome

    async def _scan(self, job: Job) -> ScriptFailure | None:
        if job.sha in self._scanned:
            self._scanned.move_to_end(job.sha)
            return None
        # In a thread: a large source takes a few hundred ms to tokenize, and the event
        # loop keeps serving live calls meanwhile (one scan at a time: it runs in a turn).
        refusal = await asyncio.to_thread(scan_source, job.source, self._trial.scan)
        if refusal is None:
            self._scanned[job.sha] = None
            while len(self._scanned) > self._trial.remembered_sources:
                self._scanned.popitem(last=False)
        return refusal
