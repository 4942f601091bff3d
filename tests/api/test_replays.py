"""/api/v1/replays: a replay started through the API runs in the background, publishes
one stamped result per raw uplink and ends `done`, as the CLI sees it; a dry run answers
with the diffs; bad requests are problem documents; at most two run at once, and those
running when the API stops are stored `interrupted`, resumable from the CLI."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from preservarium.db.engine import make_engine
from preservarium.repositories import SQLParserRepository
from preservarium_sandbox.server import SandboxServer

from tests.api.conftest import Api
from tests.replay.conftest import V1, V2, Scene
from tests.support.cli import run_cli
from tests.support.kafka import TopicReader

PAYLOADS = [bytes([1]), bytes([2]), bytes([3]), bytes([4])]


@pytest.fixture
async def scene(api: Api, api_sandbox: SandboxServer) -> AsyncIterator[Scene]:
    """A device type with versions 1 (active) and 2, in the API's database and the
    sandbox's, and four raw uplinks (with what version 1 made of them) on the API's topics."""
    topics = api.context.topics
    created = Scene(api.context.kafka_bootstrap, api.context.engine,
                    api_sandbox.config.listen, api.database_url,
                    prefix=topics.raw.removesuffix("uplink.raw"))  # fmt: skip
    sandbox_engine = make_engine(api_sandbox.config.database_url)
    try:
        for engine in (api.context.engine, sandbox_engine):
            await SQLParserRepository(engine).upload(created.device_type, V1)
            await SQLParserRepository(engine).upload(created.device_type, V2, activate=False)
    finally:
        await sandbox_engine.dispose()
    await created.uplinks(PAYLOADS)
    yield created


async def _until(client: httpx.AsyncClient, api: Api, replay_id: str, *statuses: str,
                 started: bool = False, timeout_s: float = 30.0) -> dict[str, Any]:  # fmt: skip
    """The replay once its status is one of `statuses` (and, with `started`, once it
    has published a first batch)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        answer = await client.get(f"/api/v1/replays/{replay_id}", headers=api.auth("read"))
        shown: dict[str, Any] = answer.json()
        if shown["status"] in statuses and (not started or shown["progress"]["done"] > 0):
            return shown
        assert loop.time() < deadline, shown
        await asyncio.sleep(0.05)


async def test_replays_need_a_token_and_the_write_scope(
    api: Api, client: httpx.AsyncClient, scene: Scene
) -> None:
    body = {"device_type": scene.device_type}
    assert (await client.get("/api/v1/replays")).status_code == 401
    assert (await client.post("/api/v1/replays", json=body)).status_code == 401
    refused = await client.post("/api/v1/replays", json=body, headers=api.auth("read"))
    assert refused.status_code == 403
    listed = await client.get("/api/v1/replays", headers=api.auth("read"))
    assert listed.status_code == 200 and listed.json() == []


BAD_REQUESTS: list[tuple[dict[str, Any], int, str, str | None]] = [
    ({"since": "yesterday"}, 422, "invalid-input", "since"),
    ({"since": "2026-11-30T08:00:00"}, 422, "invalid-input", "since"),
    ({"since": "1h", "until": "2h"}, 422, "invalid-input", "until"),
    ({"device_id": "no spaces"}, 422, "invalid-input", "device_id"),
    ({"source": "parsed"}, 422, "invalid-input", "body.source"),
    ({"rate": 0}, 422, "invalid-input", "body.rate"),
    ({"version": 9}, 404, "unknown-version", None),
    ({"device_type": "nobody-has-this"}, 404, "unknown-type", None),
    ({"device_type": "bad type"}, 422, "invalid-input", "device_type"),
]


async def test_bad_requests_are_problems(api: Api, client: httpx.AsyncClient, scene: Scene) -> None:
    for body, status, kind, field in BAD_REQUESTS:
        for dry_run in (False, True):
            sent = {"device_type": scene.device_type, "dry_run": dry_run, **body}
            answer = await client.post("/api/v1/replays", json=sent, headers=api.auth("write"))
            assert answer.status_code == status, (sent, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
            problem = answer.json()
            assert problem["type"].endswith("/" + kind), (sent, problem)
            assert "\n" not in problem["detail"]
            if field is not None:
                assert [e["field"] for e in problem["errors"]] == [field], (sent, problem)
    listed = await client.get("/api/v1/replays", headers=api.auth("read"))
    assert listed.json() == []  # nothing was stored
    missing = await client.get("/api/v1/replays/nope", headers=api.auth("read"))
    assert missing.status_code == 404 and missing.json()["type"].endswith("/not-found")


async def test_a_replay_publishes_a_stamped_result_per_uplink_and_ends_done(
    api: Api, client: httpx.AsyncClient, scene: Scene
) -> None:
    body = {"device_type": scene.device_type, "version": 2, "since": "10m"}
    answer = await client.post("/api/v1/replays", json=body, headers=api.auth("write"))
    assert answer.status_code == 202, answer.text
    started = answer.json()
    replay_id = started["id"]
    assert answer.headers["location"] == f"/api/v1/replays/{replay_id}"
    assert started["status"] == "running" and started["version"] == 2
    ended = await _until(client, api, replay_id, "done", "failed", "interrupted")
    assert ended["status"] == "done", ended
    assert ended["counts"]["replayed"] == 4 and ended["error"] is None
    assert ended["progress"]["done"] == ended["progress"]["total"] > 0
    assert ended["finished_at"] is not None

    results: list[dict[str, Any]] = []
    for suffix in ("uplink.parsed", "uplink.failed"):
        reader = TopicReader(scene.bootstrap, scene.topic(suffix))
        await reader.start()
        try:
            wanted = 3 if suffix == "uplink.parsed" else 1
            results += await reader.wait_for(
                lambda v: v.get("replay", {}).get("id") == replay_id, count=wanted
            )
        finally:
            await reader.stop()
    assert sorted(r["replay"]["of"] for r in results) == sorted(scene.raw_ids)
    assert {r["parser"]["version"] for r in results} == {2}

    shown = await asyncio.to_thread(run_cli, "replay", "show", replay_id, "--json", env=scene.env)
    assert shown.returncode == 0, shown.stderr
    from_cli = json.loads(shown.stdout)
    assert {k: v for k, v in ended.items() if k != "progress"} == from_cli
    listed = (await client.get("/api/v1/replays", headers=api.auth("read"))).json()
    assert [r["id"] for r in listed] == [replay_id]

    audit = (await client.get("/api/v1/audit", headers=api.auth("admin"))).json()["items"]
    entry = next(e for e in audit if e["route"] == "/api/v1/replays")
    assert entry["status"] == 202 and entry["detail"]["replay_id"] == replay_id


async def test_a_dry_run_answers_with_the_summary_and_the_diffs(
    api: Api, client: httpx.AsyncClient, scene: Scene
) -> None:
    body = {"device_type": scene.device_type, "version": 2, "dry_run": True}
    answer = await client.post("/api/v1/replays", json=body, headers=api.auth("write"))
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert found["summary"] == {"unchanged": 1, "changed": 1, "newly_failing": 1,
                                "newly_passing": 1, "no_original": 0}  # fmt: skip
    assert sorted(u["outcome"] for u in found["uplinks"]) == [
        "changed", "newly_failing", "newly_passing"]  # fmt: skip
    assert found["uplinks_truncated"] is False
    changed = next(u for u in found["uplinks"] if u["outcome"] == "changed")
    assert {"path": "data.t", "before": 2, "after": 20} in changed["changes"]

    bounded = await client.post("/api/v1/replays", params={"limit": 1}, json=body,
                                headers=api.auth("write"))  # fmt: skip
    assert len(bounded.json()["uplinks"]) == 1 and bounded.json()["uplinks_truncated"] is True
    listed = await client.get("/api/v1/replays", headers=api.auth("read"))
    assert listed.json() == []  # a dry run is not stored


async def test_two_run_at_once_and_a_stop_leaves_them_resumable(
    api: Api, client: httpx.AsyncClient, scene: Scene
) -> None:
    await scene.uplinks([bytes([1])] * 8)  # 12 at 1 per second: running for 11 s at least
    body = {"device_type": scene.device_type, "rate": 1}
    write = api.auth("write")
    ids = []
    for _ in range(2):
        answer = await client.post("/api/v1/replays", json=body, headers=write)
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["id"])
    busy = await client.post("/api/v1/replays", json=body, headers=write)
    assert busy.status_code == 429 and busy.json()["type"].endswith("/replays-busy")
    assert busy.headers["retry-after"]
    dry = await client.post("/api/v1/replays", json={**body, "dry_run": True}, headers=write)
    assert dry.status_code == 429

    for replay_id in ids:  # both publishing: the stop lands between batches
        running = await _until(client, api, replay_id, "running", "done", "failed", started=True)
        assert running["status"] == "running", running
    await api.app.state.replay_runs.stop()  # type: ignore[attr-defined]  # as the gateway stops
    for replay_id in ids:
        stopped = await _until(client, api, replay_id, "interrupted", "done", "failed")
        assert stopped["status"] == "interrupted", stopped
    resumed = await asyncio.to_thread(
        run_cli, "replay", "--resume", ids[0], "--rate", "1000", "--json", env=scene.env
    )
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "done"
    assert (await _until(client, api, ids[0], "done"))["counts"]["replayed"] == 12


async def test_a_replay_that_fails_is_stored_failed_with_its_error(api: Api, scene: Scene) -> None:
    from preservarium.replay.service import ReplayRequest
    from preservarium.repositories import SQLReplayRepository
    from preservarium.sandbox_client import SandboxClient
    from preservarium.supervisor import Supervisor
    from preservarium_gateway.api.replay_runs import replay_runs
    from preservarium_gateway.metrics import GatewayMetrics

    from tests.support.net import free_port

    metrics = GatewayMetrics()
    async with SandboxClient(f"127.0.0.1:{free_port()}", timeout_s=2.0) as nowhere:
        runs = replay_runs(
            engine=api.context.engine, sandbox=nowhere, bootstrap=scene.bootstrap,
            topics=api.context.topics, metrics=metrics, supervisor=Supervisor(),
        )  # fmt: skip
        async with runs:
            started = await runs.start(ReplayRequest(scene.device_type, Scene.window()))
            for _ in range(600):  # 30 s at least
                if not runs.running:
                    break
                await asyncio.sleep(0.05)
            assert runs.running == []
    stored = await SQLReplayRepository(api.context.engine).get(started.id)
    assert stored.status == "failed" and stored.error and "sandbox" in stored.error
    ended = metrics.registry.get_sample_value(
        "preservarium_gateway_api_replays_total", {"status": "failed"}
    )
    assert ended == 1
    assert metrics.registry.get_sample_value("preservarium_gateway_api_replays_running") == 0
