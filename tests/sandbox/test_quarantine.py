"""Quarantine counting (unit level, with a fake clock)."""

from __future__ import annotations

from preservarium.contract.kinds import ErrorKind
from preservarium_sandbox.quarantine import Quarantine, QuarantinePolicy

POLICY = QuarantinePolicy(threshold=3, cooldown_s=30.0, churn_limit=4, churn_window_s=10.0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_deaths_between_successes_bench_the_version_past_the_churn_budget() -> None:
    clock = Clock()
    quarantine = Quarantine(POLICY, clock)
    benched = []
    for _ in range(POLICY.churn_limit + 1):
        benched.append(quarantine.record("v", ErrorKind.RUNTIME_ERROR, worker_died=True))
        benched.append(quarantine.record("v", None))  # a success in between
        clock.now += 0.5
    assert benched[-2] is True and not any(benched[:-2])
    assert quarantine.remaining("v") > 0
    assert quarantine.remaining("other") == 0


def test_a_recycle_is_no_failure_but_counts_against_the_churn_budget() -> None:
    clock = Clock()
    quarantine = Quarantine(POLICY, clock)
    for _ in range(POLICY.churn_limit):
        assert quarantine.record("v", None, worker_replaced=True) is False
        assert not quarantine.on_probation("v")  # a successful call: nothing failed
    assert quarantine.record("v", None, worker_replaced=True) is True


def test_replacements_spread_past_the_window_never_bench() -> None:
    clock = Clock()
    quarantine = Quarantine(POLICY, clock)
    for _ in range(5 * POLICY.churn_limit):
        assert quarantine.record("v", ErrorKind.MEMORY_LIMIT, worker_replaced=True) is False
        assert quarantine.record("v", None) is False
        clock.now += POLICY.churn_window_s / POLICY.churn_limit + 0.01
