"""The background lane end to end: the request's flag reaches the worker pool, from a
unary Parse and from a ParseStream, and the calls are counted by lane."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from preservarium.repositories import SQLParserRepository
from preservarium.sandbox_client import SandboxClient
from preservarium_sandbox.pool import Job
from preservarium_sandbox.server import SandboxServer
from preservarium_sandbox.worker_process import CallResult

from tests.sandbox.conftest import contact, wait_for_version
from tests.sandbox.support import outcome

ECHO = "def parse(payload, metadata):\n    return {'n': len(payload)}\n"


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
