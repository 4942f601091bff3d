"""Quarantine: a parser version that keeps timing out or blowing its memory is benched.

Only failures that cost the sandbox (timeouts, memory limits, dead workers) count: a
parser that raises on a bad payload is doing its job and is never quarantined for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from preservarium_sandbox.engine.errors import ErrorKind

COSTLY = frozenset({ErrorKind.TIMEOUT, ErrorKind.MEMORY_LIMIT})


@dataclass(frozen=True, slots=True)
class QuarantinePolicy:
    """How many costly failures in a row, and how long the bench lasts."""

    threshold: int = 3
    cooldown_s: float = 30.0


@dataclass(slots=True)
class _State:
    failures: int = 0
    until: float = 0.0


@dataclass
class Quarantine:
    """Per parser version (device type and sha256): costly failures in a row, bench end."""

    policy: QuarantinePolicy = field(default_factory=QuarantinePolicy)
    clock: Callable[[], float] = time.monotonic
    _states: dict[str, _State] = field(default_factory=dict)

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

    def record(self, key: str, kind: ErrorKind | None, *, worker_died: bool = False) -> bool:
        """Count one call's outcome; return True when this call put `key` in quarantine."""
        if kind not in COSTLY and not worker_died:
            self._states.pop(key, None)
            return False
        state = self._states.setdefault(key, _State())
        state.failures += 1
        if state.failures >= self.policy.threshold and not state.until:
            state.until = self.clock() + self.policy.cooldown_s
            return True
        return False

    @property
    def benched(self) -> int:
        """How many parser versions are in quarantine now."""
        now = self.clock()
        return sum(1 for state in self._states.values() if state.until > now)
