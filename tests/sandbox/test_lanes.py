"""The background lane end to end: the request's flag reaches the worker pool, from a
unary Parse and from a ParseStream, the calls are counted by lane, and a background
answer says how many live calls waited behind background work meanwhile."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from preservarium.repositories import SQLParserRepository
from preservarium.sandbox_client import SandboxClient
from preservarium_sandbox.limits import Limits
from preservarium_sandbox.pool import Job
from preservarium_sandbox.server import SandboxServer
from preservarium_sandbox.worker_process import CallResult

from tests.sandbox.conftest import contact, sandbox_config, wait_for_version
from tests.sandbox.support import outcome
from tests.support.waiting import until

ECHO = "def parse(payload, metadata):\n    return {'n': len(payload)}\n"
# Holds its worker until its deadline on the payload b"spin"; answers at once otherwise.
SPIN = (
    "def parse(payload, metadata):\n    while payload == b'spin':\n        pass\n"
    "    return {'n': len(payload)}\n"
)


@pytest.fixture
def jobs(sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Job]]:
    """Every job the pool is asked to run, in order."""
    seen: list[Job] = []
    run = sandbox.pool.run

    async def spy(job: Job, *args: Any, **kwargs: Any) -> CallResult:
        seen.append(job)
        return await run(job, *args, **kwargs)

    monkeypatch.setattr(sandbox.pool, "run", spy)
    yield seen


def lane_count(sandbox: SandboxServer, lane: str) -> float:
    value = sandbox.metrics.registry.get_sample_value(
        "preservarium_sandbox_lane_calls_total", {"lane": lane}
    )
    return value or 0.0


@pytest.mark.parametrize("streams", [0, 1], ids=["Parse", "ParseStream"])
async def test_the_background_flag_reaches_the_pool(
    streams: int, sandbox: SandboxServer, parsers: SQLParserRepository, jobs: list[Job]
) -> None:
    device_type = f"t{uuid.uuid4().hex[:10]}"
    await parsers.upload(device_type, ECHO)
    async with SandboxClient(sandbox.config.listen, timeout_s=10, streams=streams) as client:
        await wait_for_version(client, device_type, 1)
        before = lane_count(sandbox, "background"), lane_count(sandbox, "live")
        jobs.clear()
        replayed = await client.parse(contact(device_type, b"ab"), background=True)
        live = await client.parse(contact(device_type, b"abc"))
    assert outcome(replayed) == ("ok", {"n": 2}) and outcome(live) == ("ok", {"n": 3})
    assert [(job.payload, job.background) for job in jobs] == [(b"ab", True), (b"abc", False)]
    assert lane_count(sandbox, "background") == before[0] + 1
    assert lane_count(sandbox, "live") == before[1] + 1


@pytest.fixture
async def slow_sandbox(sandbox_db: str) -> AsyncIterator[SandboxServer]:
    """Two workers, and a deadline long enough to line calls up behind held workers."""
    config = sandbox_config(sandbox_db, limits=Limits(timeout_ms=2000, memory_mb=256))
    async with SandboxServer(config) as server:
        yield server


async def test_a_background_answer_counts_the_live_calls_that_waited_behind_it(
    slow_sandbox: SandboxServer, parsers: SQLParserRepository
) -> None:
    pool = slow_sandbox.pool
    replayed_type, live_type = (f"t{uuid.uuid4().hex[:10]}" for _ in range(2))
    for device_type in (replayed_type, live_type):
        await parsers.upload(device_type, SPIN)
    # Unary calls: a stream client keeps two messages out at most, and would hold the
    # third call back itself while the first two spin.
    async with SandboxClient(slow_sandbox.config.listen, timeout_s=10) as client:
        for device_type in (replayed_type, live_type):
            await wait_for_version(client, device_type, 1)
        alone = await client.parse(contact(replayed_type, b"ab"), background=True)
        assert outcome(alone) == ("ok", {"n": 2}) and alone.live_waited == 0
        idle = pool.idle
        replayed = asyncio.create_task(
            client.parse(contact(replayed_type, b"spin"), background=True)
        )
        await until(lambda: pool.idle == idle - 1)  # the replay holds a worker...
        live = asyncio.create_task(client.parse(contact(live_type, b"spin")))
        await until(lambda: pool.idle == idle - 2)  # ...and a device the other one
        delayed = pool.live_delayed
        waiting = asyncio.create_task(client.parse(contact(live_type, b"abc")))
        await until(lambda: pool.live_delayed == delayed + 1)  # the next device waits
        answers = await asyncio.gather(replayed, live, waiting)
    assert [outcome(answer)[0] for answer in answers] == ["timeout", "timeout", "ok"]
    assert answers[0].live_waited >= 1  # the replay is told a device waited behind it
    assert answers[1].live_waited == answers[2].live_waited == 0  # live calls never are
