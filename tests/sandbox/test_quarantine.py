"""Quarantine counting, probation and admission (unit level, with a fake clock)."""

from __future__ import annotations

import asyncio

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


def test_admission_refuses_a_call_once_its_version_is_benched() -> None:
    clock = Clock()
    quarantine = Quarantine(POLICY, clock)
    admit = quarantine.admission("v")  # taken when the call queued
    assert admit()
    for _ in range(POLICY.threshold):
        quarantine.record("v", ErrorKind.TIMEOUT)
    assert not admit() and quarantine.admission("other")()
    clock.now += POLICY.cooldown_s
    assert admit()  # the bench is over


async def test_a_version_on_probation_runs_one_call_at_a_time() -> None:
    quarantine = Quarantine(POLICY, Clock())
    quarantine.record("v", ErrorKind.TIMEOUT)
    assert quarantine.on_probation("v")
    running: list[str] = []
    most = 0

    async def call(key: str) -> None:
        nonlocal most
        async with quarantine.turn(key):
            running.append(key)
            most = max(most, running.count("v"))
            await asyncio.sleep(0.01)
            running.remove(key)

    async with asyncio.timeout(5):
        await asyncio.gather(*(call("v") for _ in range(3)), *(call("w") for _ in range(3)))
    assert most == 1
    others = Quarantine(POLICY, Clock())

    async def together() -> int:  # a version not on probation: every call at once
        async with others.turn("w"):
            await asyncio.sleep(0.01)
            return 1

    async with asyncio.timeout(1):
        assert sum(await asyncio.gather(*(together() for _ in range(3)))) == 3
