"""Versions that cost workers are benched, whatever their successes in between: a raised
MemoryError costs nothing, a real memory failure or a dead worker counts."""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from preservarium.repositories import SQLParserRepository
from preservarium.sandbox_client import SandboxClient, SandboxUnavailableError
from preservarium_sandbox.limits import Limits
from preservarium_sandbox.quarantine import QuarantinePolicy
from preservarium_sandbox.server import SandboxServer

from tests.sandbox.conftest import contact, sandbox_config, wait_for_version
from tests.sandbox.support import outcome

POLICY = QuarantinePolicy(threshold=3, cooldown_s=30.0, churn_limit=4, churn_window_s=30.0)
LIMITS = Limits(timeout_ms=1000, memory_mb=256)
ECHO = "def parse(payload, metadata):\n    return {'n': len(payload)}\n"
RAISES_MEMORY = (
    "def parse(payload, metadata):\n"
    "    if payload == b'm':\n        raise MemoryError\n"
    "    return {'n': len(payload)}\n"
)
REAL_MEMORY = (
    "def parse(payload, metadata):\n"
    "    if payload == b'm':\n        return {'n': len(bytearray(1024 * 1024 * 1024))}\n"
    "    return {'n': len(payload)}\n"
)


@pytest.fixture(scope="module")
async def churn_sandbox(sandbox_db: str) -> AsyncIterator[SandboxServer]:
    config = sandbox_config(sandbox_db, limits=LIMITS, quarantine=POLICY)
    async with SandboxServer(config) as server:
        yield server


@pytest.fixture(scope="module")
async def churn_client(churn_sandbox: SandboxServer) -> AsyncIterator[SandboxClient]:
    async with SandboxClient(churn_sandbox.config.listen, timeout_s=10) as created:
        yield created


async def upload(client: SandboxClient, parsers: SQLParserRepository, source: str) -> str:
    device_type = f"t{uuid.uuid4().hex[:10]}"
    await parsers.upload(device_type, source)
    await wait_for_version(client, device_type, 1)
    return device_type


async def alternate(
    client: SandboxClient, device_type: str, good: str, calls: int
) -> tuple[list[str], list[float]]:
    """Alternate a costly payload and a plain one; time a benign parser's call after each."""
    kinds, latencies = [], []
    for n in range(calls):
        kinds.append(
            outcome(await client.parse(contact(device_type, b"m" if n % 2 == 0 else b"ok")))[0]
        )
        started = time.perf_counter()
        assert outcome(await client.parse(contact(good, b"xy"))) == ("ok", {"n": 2})
        latencies.append(time.perf_counter() - started)
    return kinds, latencies


@pytest.mark.serial
async def test_a_raised_memory_error_is_a_runtime_error_that_costs_no_worker(
    churn_client: SandboxClient, churn_sandbox: SandboxServer, parsers: SQLParserRepository
) -> None:
    device_type = await upload(churn_client, parsers, RAISES_MEMORY)
    good = await upload(churn_client, parsers, ECHO)
    spawned = churn_sandbox.pool.spawned
    kinds, latencies = await alternate(churn_client, device_type, good, 40)
    assert set(kinds[0::2]) == {"runtime_error"} and set(kinds[1::2]) == {"ok"}
    assert churn_sandbox.pool.spawned - spawned <= 1  # before: one new process a call
    assert statistics.median(latencies) < 0.05


@pytest.mark.serial
async def test_a_version_that_keeps_costing_workers_is_quarantined_despite_successes(
    churn_client: SandboxClient, churn_sandbox: SandboxServer, parsers: SQLParserRepository
) -> None:
    # (A parser that crashed its worker, by hashing a million-deep tuple, now gets a
    # RecursionError instead: tests/sandbox/test_nesting.py. test_quarantine.py counts
    # dead workers.)
    for source, kind in ((REAL_MEMORY, "memory_limit"),):
        device_type = await upload(churn_client, parsers, source)
        good = await upload(churn_client, parsers, ECHO)
        spawned = churn_sandbox.pool.spawned
        kinds, latencies = await alternate(churn_client, device_type, good, 24)
        costly = kinds[0::2]
        assert kind in costly and costly[-1] == "quarantined", kinds
        # Benched once its replacements pass the budget, successes in between or not.
        assert costly.count(kind) <= POLICY.churn_limit + 1, kinds
        assert churn_sandbox.pool.spawned - spawned <= POLICY.churn_limit + 1
        assert max(latencies) < LIMITS.timeout_ms / 1000


async def test_callers_that_give_up_mid_call_cannot_churn_workers_for_free(
    churn_client: SandboxClient, churn_sandbox: SandboxServer, parsers: SQLParserRepository
) -> None:
    slow = "def parse(payload, metadata):\n    while True:\n        pass\n"
    device_type = await upload(churn_client, parsers, slow)  # one timeout on the way
    spawned = churn_sandbox.pool.spawned
    kinds = []
    for _ in range(30):
        try:  # the caller's deadline is far shorter than the parser's: it gives up
            response = await churn_client.parse(contact(device_type), timeout_s=0.1)
        except SandboxUnavailableError:
            kinds.append("gave_up")
            continue
        kinds.append(outcome(response)[0])
        if kinds[-1] == "quarantined":
            break
    assert kinds[-1] == "quarantined", kinds
    # Each abandoned call cost a worker; past the budget the version is benched.
    assert churn_sandbox.pool.spawned - spawned <= POLICY.churn_limit + 2, kinds
