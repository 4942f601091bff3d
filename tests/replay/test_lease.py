"""Two runners of one replay (two CLIs, or the API's task and a CLI), against the real
broker and sandbox, with the replay's state on SQLite and on PostgreSQL: the second is
refused while the first holds its lease, takes over once the lease expired (a crashed or
stalled first runner), and no uplink is published twice."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from preservarium.db.engine import make_engine
from preservarium.errors import DatabaseUnavailableError
from preservarium.replay import ReplayError
from preservarium.replay.lease import ReplayLease
from preservarium.replay.run import Progress
from preservarium.replay.service import Observers, ReplayRequest, Replays
from preservarium.repositories import ReplayRecord, SQLParserRepository, SQLReplayRepository
from preservarium.repositories.replays import DONE, RUNNING, Holder
from preservarium.sandbox_client import SandboxClient
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.replay.conftest import Scene, stamped_of, until_lease_expires

REFUSAL = re.compile(
    r"replay (\w+) is running in pid (\d+) on host (\S+); "
    r"lease until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
)


@pytest.fixture(params=["sqlite", "postgresql"])
async def state(
    request: pytest.FixtureRequest, scene: Scene, postgres_database: str
) -> AsyncIterator[AsyncEngine]:
    """Where the replays are stored: the scene's SQLite database, or PostgreSQL (the
    parsers stay where the sandbox reads them)."""
    if request.param == "sqlite":
        yield scene.engine
        return
    engine = make_engine(postgres_database)
    yield engine
    await engine.dispose()


def replays(
    scene: Scene, client: SandboxClient, repository: SQLReplayRepository, lease_s: float
) -> Replays:
    return Replays(
        parsers=SQLParserRepository(scene.engine), replays=repository, sandbox=client,
        bootstrap=scene.bootstrap, topics=scene.topics, lease_s=lease_s,
    )  # fmt: skip


class Stalls(SQLReplayRepository):
    """The real repository, whose database stops answering (checkpoints and lease
    renewals hang) from the `stall_at`-th checkpoint until `resume` is set."""

    def __init__(self, engine: AsyncEngine, *, stall_at: int) -> None:
        super().__init__(engine)
        self.calls = 0
        self.stall_at = stall_at
        self.stalled = asyncio.Event()
        self.resume = asyncio.Event()

    async def _hang(self) -> None:
        if self.calls >= self.stall_at:
            self.stalled.set()
            await self.resume.wait()

    async def checkpoint(self, replay: ReplayRecord, **lease: Any) -> None:
        self.calls += 1
        await self._hang()
        await super().checkpoint(replay, **lease)

    async def renew(self, replay_id: str, holder: Holder, lease_s: float) -> None:
        await self._hang()
        await super().renew(replay_id, holder, lease_s)


class Dies(SQLReplayRepository):
    """The real repository, gone for good from the `fail_at`-th checkpoint: the runner
    stops as a crashed process would, leaving its replay `running` and held."""

    def __init__(self, engine: AsyncEngine, *, fail_at: int) -> None:
        super().__init__(engine)
        self.calls = 0
        self.fail_at = fail_at

    def _gone(self) -> None:
        if self.calls >= self.fail_at:
            raise DatabaseUnavailableError("database unavailable: connection lost")

    async def checkpoint(self, replay: ReplayRecord, **lease: Any) -> None:
        self.calls += 1
        self._gone()
        await super().checkpoint(replay, **lease)

    async def renew(self, replay_id: str, holder: Holder, lease_s: float) -> None:
        self._gone()
        await super().renew(replay_id, holder, lease_s)

    async def finish(
        self, replay: ReplayRecord, status: str, error: str | None = None, **lease: Any
    ) -> None:
        raise DatabaseUnavailableError("database unavailable: connection lost")


async def the_replay(scene: Scene, repository: SQLReplayRepository) -> ReplayRecord:
    (found,) = [r for r in await repository.list() if r.device_type == scene.device_type]
    return found


async def test_a_second_runner_is_refused_while_the_first_runs(
    scene: Scene, client: SandboxClient, state: AsyncEngine
) -> None:
    ids = await scene.uplinks([b"\x01"] * 30)
    under_way = asyncio.Event()

    def progress(seen: Progress) -> None:
        if seen.counts.get("replayed", 0) >= 5:
            under_way.set()

    first = replays(scene, client, SQLReplayRepository(state), lease_s=30)
    request = ReplayRequest(scene.device_type, scene.window(), rate=20)  # 5 a batch, 1.5 s
    running = asyncio.create_task(first.start(request, Observers(progress=progress)))
    await asyncio.wait_for(under_way.wait(), 15)
    held = await the_replay(scene, SQLReplayRepository(state))
    second = replays(scene, client, SQLReplayRepository(state), lease_s=30)
    with pytest.raises(ReplayError) as refused:
        await second.resume(held.id)
    assert refused.value.kind == "replay_running" and not refused.value.retriable
    found = REFUSAL.fullmatch(str(refused.value))
    assert found is not None and found.group(1) == held.id
    assert held.holder is not None and int(found.group(2)) == held.holder.pid
    summary = await running
    assert summary.replay.status == DONE
    assert await stamped_of(scene, held.id, len(ids)) == {i: 1 for i in ids}


async def test_a_crashed_runners_replay_is_taken_over_once_its_lease_expired(
    scene: Scene, client: SandboxClient, state: AsyncEngine
) -> None:
    ids = await scene.uplinks([bytes([1 + i % 4]) for i in range(30)])
    request = ReplayRequest(scene.device_type, scene.window(), version=2, rate=40)  # 10 a batch
    crashing = replays(scene, client, Dies(state, fail_at=3), lease_s=1.5)
    with pytest.raises(ReplayError):
        await crashing.start(request)
    crashed = await the_replay(scene, SQLReplayRepository(state))
    assert crashed.status == RUNNING and crashed.holder is not None
    second = replays(scene, client, SQLReplayRepository(state), lease_s=30)
    with pytest.raises(ReplayError) as refused:  # its lease still runs
        await second.resume(crashed.id)
    assert refused.value.kind == "replay_running"
    await until_lease_expires(crashed)
    summary = await second.resume(crashed.id)
    assert summary.replay.status == DONE
    assert summary.counts["replayed"] + summary.counts.get("skipped", 0) == len(ids)
    assert await stamped_of(scene, crashed.id, len(ids)) == {i: 1 for i in ids}


async def test_a_stalled_runner_that_lost_its_lease_publishes_nothing_more(
    scene: Scene, client: SandboxClient, state: AsyncEngine
) -> None:
    ids = await scene.uplinks([b"\x01"] * 30)
    request = ReplayRequest(scene.device_type, scene.window(), rate=40)  # 10 a batch
    stalling = Stalls(state, stall_at=3)  # the 1st stores the spans; one batch out
    first = replays(scene, client, stalling, lease_s=1.5)
    running = asyncio.create_task(first.start(request))
    await asyncio.wait_for(stalling.stalled.wait(), 15)
    held = await the_replay(scene, SQLReplayRepository(state))
    await until_lease_expires(held)
    second = replays(scene, client, SQLReplayRepository(state), lease_s=30)
    summary = await second.resume(held.id)
    assert summary.replay.status == DONE
    stalling.resume.set()  # the first wakes up: its checkpoint finds the replay taken
    with pytest.raises(ReplayError) as lost:
        await asyncio.wait_for(running, 15)
    assert lost.value.kind == "lease_lost"
    assert (await SQLReplayRepository(state).get(held.id)).status == DONE
    assert await stamped_of(scene, held.id, len(ids)) == {i: 1 for i in ids}


async def test_the_fence_renews_a_lease_past_its_half_and_refuses_a_lost_one(
    scene: Scene, state: AsyncEngine
) -> None:
    repository = SQLReplayRepository(state)
    window = scene.window()
    stored = await repository.create(ReplayRecord(
        id=f"f{scene.device_type[1:12]}", device_type=scene.device_type, version=1,
        since=window.since, until=window.until, device_id=None, source="raw", rate=10,
    ))  # fmt: skip
    now = [0.0]
    lease = ReplayLease(repository, stored.id, lease_s=60, clock=lambda: now[0])
    first = (await lease.acquire()).lease_until
    await lease.fence()  # fresh: no renewal needed
    assert (await repository.get(stored.id)).lease_until == first
    now[0] = 31.0  # past half the lease: renewed before anything is published
    await asyncio.sleep(0.01)
    await lease.fence()
    renewed = (await repository.get(stored.id)).lease_until
    assert first is not None and renewed is not None and renewed > first
    await repository.finish(stored, "interrupted", holder=lease.holder)
    await repository.acquire(stored.id, Holder("f" * 16, "elsewhere", 7), 60)
    now[0] = 62.0
    with pytest.raises(ReplayError) as lost:
        await lease.fence()
    assert lost.value.kind == "lease_lost" and lease.lost
