"""Whether a parser version may run now: quarantine, probation and admission.

A parser version that keeps timing out, blowing its memory, killing its worker or
otherwise costing workers is benched (quarantine); one whose latest calls failed that
way, short of the bench, runs on one worker at a time (probation); and a call that
queued for a worker before its version was benched is refused at the door (admission).

Only failures that cost the sandbox count: a parser that raises on a bad payload is doing
its job and is never quarantined for it. Two counters, because successes in between must
not hide the cost: costly failures in a row, and worker replacements in a sliding window
(a version that costs a worker every other call churns processes whatever it returns).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from preservarium.contract.kinds import ErrorKind

from preservarium_sandbox.limits import CHURN_VERSIONS_KEPT, PROBATION_SLOTS_KEPT
from preservarium_sandbox.limits import QuarantinePolicy as QuarantinePolicy

COSTLY = frozenset({ErrorKind.TIMEOUT, ErrorKind.MEMORY_LIMIT})


class NotAdmittedError(Exception):
    """A call's admission check said no once a worker was free: it never ran."""


@dataclass(slots=True)
class _State:
    failures: int = 0
    until: float = 0.0


@dataclass
class Quarantine:
    """Per parser version (device type and sha256): costly failures in a row, worker
    replacements in the last window, bench end."""

    policy: QuarantinePolicy = field(default_factory=QuarantinePolicy)
    clock: Callable[[], float] = time.monotonic
    _states: dict[str, _State] = field(default_factory=dict)
    _replacements: dict[str, deque[float]] = field(default_factory=dict)
    _probation: dict[str, asyncio.Semaphore] = field(default_factory=dict)

    def admission(self, key: str) -> Callable[[], bool]:
        """The check a call of `key` passes once a worker is free for it, however long it
        waited: calls that queued before their version was benched must not run (each
        would cost a worker its whole timeout). The pool asks it at the door."""
        return lambda: not self.remaining(key)

    @contextlib.asynccontextmanager
    async def turn(self, key: str) -> AsyncIterator[None]:
        """Held while a call of `key` runs: a version on probation waits for its one
        worker at a time; any other goes at once."""
        if not self.on_probation(key):
            yield
            return
        async with self._probation_slot(key):
            yield

    def _probation_slot(self, key: str) -> asyncio.Semaphore:
        slot = self._probation.get(key)
        if slot is None:
            if len(self._probation) > PROBATION_SLOTS_KEPT:
                self._probation.clear()
            slot = self._probation[key] = asyncio.Semaphore(1)
        return slot

    def on_probation(self, key: str) -> bool:
        """True while `key`'s latest calls failed costly, short of quarantine: such a
        version gets one worker at a time, so it cannot hold every worker at once."""
        state = self._states.get(key)
        return state is not None and state.failures > 0

    def remaining(self, key: str) -> float:
        """Seconds of quarantine left for `key` (0 when it may run)."""
        state = self._states.get(key)
        if state is None or not state.until:
            return 0.0
        left = state.until - self.clock()
        if left <= 0:
            # The bench is over: one more chance, then a single failure benches it again.
            state.until = 0.0
            state.failures = self.policy.threshold - 1
            return 0.0
        return left

    def record(
        self,
        key: str,
        kind: ErrorKind | None,
        *,
        worker_died: bool = False,
        worker_replaced: bool = False,
    ) -> bool:
        """Count one call's outcome; return True when this call put `key` in quarantine.

        `worker_replaced` (the call cost its worker, even if it succeeded, e.g. a memory
        recycle) is no failure by itself, but counts against the churn budget.
        """
        churning = (worker_replaced or worker_died) and self._churning(key)
        costly = kind in COSTLY or worker_died
        if not costly and not churning:
            state = self._states.get(key)
            # A call already in flight when its version was benched lifts no bench.
            if state is not None and not state.until:
                del self._states[key]
            return False
        return self._fail(key, bench=churning)

    def _fail(self, key: str, *, bench: bool) -> bool:
        state = self._states.setdefault(key, _State())
        state.failures = max(state.failures + 1, self.policy.threshold if bench else 0)
        if state.failures >= self.policy.threshold and not state.until:
            state.until = self.clock() + self.policy.cooldown_s
            return True
        return False

    def _churning(self, key: str) -> bool:
        """Count one replacement for `key`; True once they pass the budget of the window."""
        now = self.clock()
        times = self._replacements.setdefault(key, deque())
        times.append(now)
        while times and times[0] <= now - self.policy.churn_window_s:
            times.popleft()
        self._forget_idle(now)
        return len(times) > self.policy.churn_limit

    def _forget_idle(self, now: float) -> None:
        # Versions whose replacements all left the window are forgotten: memory stays
        # bounded by the versions churning now, not by every version ever seen.
        if len(self._replacements) > CHURN_VERSIONS_KEPT:
            horizon = now - self.policy.churn_window_s
            for key in [k for k, t in self._replacements.items() if not t or t[-1] <= horizon]:
                del self._replacements[key]

    @property
    def benched(self) -> int:
        """How many parser versions are in quarantine now."""
        now = self.clock()
        return sum(1 for state in self._states.values() if state.until > now)
