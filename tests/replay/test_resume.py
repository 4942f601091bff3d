"""An interrupted replay resumes without publishing any uplink twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from preservarium.errors import DatabaseUnavailableError
from preservarium.replay import ReplayError
from preservarium.replay.run import Progress
from preservarium.replay.service import Observers, ReplayRequest
from preservarium.repositories import ReplayRecord, SQLReplayRepository
from preservarium.repositories.replays import DONE, INTERRUPTED, RUNNING, Holder
from preservarium.sandbox_client import SandboxClient

from tests.replay.conftest import Scene, stamped_of, until_lease_expires


class LosesItsDatabase(SQLReplayRepository):
    """The real repository, whose database goes away at the `fail_at`-th checkpoint (and
    stays away): the batch before it was published, its positions never stored."""

    def __init__(self, *args: object, fail_at: int) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.calls = 0
        self.fail_at = fail_at

    async def checkpoint(self, replay: ReplayRecord, **lease: Any) -> None:
        self.calls += 1
        if self.calls >= self.fail_at:
            raise DatabaseUnavailableError("database unavailable: connection lost")
        await super().checkpoint(replay, **lease)

    async def renew(self, replay_id: str, holder: Holder, lease_s: float) -> None:
        if self.calls >= self.fail_at:
            raise DatabaseUnavailableError("database unavailable: connection lost")
        await super().renew(replay_id, holder, lease_s)

    async def finish(
        self, replay: ReplayRecord, status: str, error: str | None = None, **lease: Any
    ) -> None:
        raise DatabaseUnavailableError("database unavailable: connection lost")


async def test_a_replay_cut_between_publish_and_checkpoint_resumes_without_duplicates(
    scene: Scene, client: SandboxClient
) -> None:
    ids = await scene.uplinks([bytes([1 + i % 4]) for i in range(35)])
    failing = LosesItsDatabase(scene.engine, fail_at=3)  # the 1st stores the spans
    request = ReplayRequest(scene.device_type, scene.window(), version=2, rate=40)  # 10 a batch
    with pytest.raises(ReplayError) as caught:
        await scene.replays(client, failing, lease_s=1).start(request)
    assert caught.value.kind == "database_unavailable" and caught.value.retriable
    (stored,) = [r for r in await SQLReplayRepository(scene.engine).list()
                 if r.device_type == scene.device_type]  # fmt: skip
    # The process died with its database: the replay still says running, 1 batch done,
    # held by the dead runner until its lease expires.
    assert stored.status == RUNNING and stored.counts["replayed"] == 10
    await until_lease_expires(stored)
    summary = await scene.replays(client).resume(stored.id)
    assert summary.replay.status == DONE
    assert (await SQLReplayRepository(scene.engine).get(stored.id)).status == DONE
    assert await stamped_of(scene, stored.id, len(ids)) == Counter(ids)
    # The batch published before the cut was found on the topics, not published again.
    assert summary.counts["skipped"] >= 1
    assert summary.counts["replayed"] + summary.counts["skipped"] == len(ids)


async def test_an_interrupted_replay_is_marked_and_resumes(
    scene: Scene, client: SandboxClient
) -> None:
    ids = await scene.uplinks([b"\x01"] * 40)
    under_way = asyncio.Event()

    def progress(state: Progress) -> None:
        if state.counts.get("replayed", 0) >= 5:
            under_way.set()

    request = ReplayRequest(scene.device_type, scene.window(), rate=20)  # 5 a batch, 4 a second
    task = asyncio.create_task(scene.replays(client).start(request, Observers(progress=progress)))
    await asyncio.wait_for(under_way.wait(), 15)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (stored,) = [r for r in await SQLReplayRepository(scene.engine).list()
                 if r.device_type == scene.device_type]  # fmt: skip
    assert stored.status == INTERRUPTED and 0 < stored.counts["replayed"] < 40
    summary = await scene.replays(client).resume(stored.id)
    assert summary.counts["replayed"] + summary.counts.get("skipped", 0) == 40
    assert await stamped_of(scene, stored.id, len(ids)) == Counter(ids)
    with pytest.raises(ReplayError) as done:
        await scene.replays(client).resume(stored.id)
    assert done.value.kind == "not_resumable"


async def test_an_unknown_replay_cannot_be_resumed(scene: Scene, client: SandboxClient) -> None:
    with pytest.raises(ReplayError) as caught:
        await scene.replays(client).resume("0123456789ab")
    assert caught.value.kind == "unknown_replay"


async def test_a_prepared_replay_runs_later_and_its_status_is_readable(
    scene: Scene, client: SandboxClient
) -> None:
    """What an API route does: store the replay, answer, run it in the background."""
    ids = await scene.uplinks([b"\x01", b"\x02"])
    replays = scene.replays(client)
    prepared = await replays.prepare(ReplayRequest(scene.device_type, scene.window()))
    assert (await replays.status(prepared.id)).positions == {}
    summary = await replays.resume(prepared.id)
    status = await replays.status(prepared.id)
    assert status.status == DONE and status.counts["replayed"] == len(ids) == 2
    assert summary.replay.id == prepared.id
