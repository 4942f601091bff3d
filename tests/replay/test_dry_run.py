"""A dry run publishes nothing and diffs each result against what was published then."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from preservarium.replay.outcomes import Verdict
from preservarium.replay.service import Observers, ReplayRequest
from preservarium.repositories import SQLReplayRepository
from preservarium.sandbox_client import SandboxClient

from tests.replay.conftest import Scene


async def ends(scene: Scene) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=scene.bootstrap, group_id=None)
    await consumer.start()
    try:
        parts = [TopicPartition(scene.topic(t), p) for t in ("uplink.parsed", "uplink.failed")
                 for p in range(3)]  # fmt: skip
        return dict(await consumer.end_offsets(parts))
    finally:
        await consumer.stop()


async def test_a_dry_run_diffs_each_outcome_and_publishes_nothing(
    scene: Scene, client: SandboxClient
) -> None:
    same, changed, failing, passing = await scene.uplinks([b"\x01", b"\x02", b"\x03", b"\x04"])
    (unknown,) = await scene.uplinks([b"\x01"], original=False)
    before = await ends(scene)
    seen: list[Verdict] = []
    summary = await scene.replays(client).dry_run(
        ReplayRequest(scene.device_type, scene.window(), version=2),
        Observers(verdict=seen.append),
    )
    assert await ends(scene) == before
    stored = await SQLReplayRepository(scene.engine).list()
    assert all(r.device_type != scene.device_type for r in stored)
    found = {v.uplink_id: v for v in seen}
    assert {k: found[k].outcome for k in found} == {
        same: "unchanged", changed: "changed", failing: "newly_failing",
        passing: "newly_passing", unknown: "no_original",
    }  # fmt: skip
    assert found[same].changes == []
    assert [c.as_json() for c in found[changed].changes] == [
        {"path": "data.t", "before": 2, "after": 20}
    ]
    # A side that has no such field: the whole field appears or disappears.
    failing_diff = {c.path: c.as_json() for c in found[failing].changes}
    assert failing_diff["data"] == {"path": "data", "before": {"t": 3, "path": ""}}
    assert failing_diff["error"]["after"]["kind"] == "runtime_error"
    passing_diff = {c.path: c.as_json() for c in found[passing].changes}
    assert passing_diff["data"] == {"path": "data", "after": {"t": 4, "path": ""}}
    assert passing_diff["error"]["before"]["kind"] == "runtime_error"
    counts = summary.counts
    assert [counts[k] for k in ("unchanged", "changed", "newly_failing", "newly_passing")] == [
        1
    ] * 4
    assert counts["no_original"] == 1 and summary.dry_run


async def test_a_dry_run_of_the_version_that_ran_finds_nothing_changed(
    scene: Scene, client: SandboxClient
) -> None:
    await scene.uplinks([b"\x01", b"\x02", b"\x04"])
    summary = await scene.replays(client).dry_run(
        ReplayRequest(scene.device_type, scene.window(), version=1)
    )
    assert summary.counts["unchanged"] == 3, summary
    assert all(summary.counts.get(k, 0) == 0 for k in ("changed", "newly_failing", "newly_passing"))
