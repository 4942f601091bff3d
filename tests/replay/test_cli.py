"""`preservarium replay` and `parser upload --check-against` through the console script."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
from preservarium.repositories import ReplayRecord, SQLParserRepository, SQLReplayRepository
from preservarium.repositories.replays import Holder

from tests.replay.conftest import V1, V2, Scene, source_file
from tests.support.cli import BIN, run_cli


async def cli(scene: Scene, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run_cli, *args, env=scene.env)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    return one_line_of(result.stderr)


async def test_a_dry_run_in_json_for_ci(scene: Scene) -> None:
    same, changed, failing, passing = await scene.uplinks([b"\x01", b"\x02", b"\x03", b"\x04"])
    result = await cli(scene, "replay", scene.device_type, "--version", "2", "--since", "10m",
                       "--dry-run", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["summary"] == {"unchanged": 1, "changed": 1, "newly_failing": 1,
                                 "newly_passing": 1, "no_original": 0}  # fmt: skip
    outcomes = {u["id"]: u["outcome"] for u in report["uplinks"]}
    assert outcomes == {changed: "changed", failing: "newly_failing", passing: "newly_passing"}
    assert same not in outcomes


async def test_a_replay_prints_its_id_and_list_and_show_find_it(scene: Scene) -> None:
    await scene.uplinks([b"\x01", b"\x02"])
    result = await cli(scene, "replay", scene.device_type, "--since", "10m")
    assert result.returncode == 0, result.stderr
    replay_id = result.stdout.strip()
    shown = await cli(scene, "replay", "show", replay_id, "--json")
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert (record["status"], record["version"], record["counts"]["replayed"]) == ("done", 1, 2)
    listed = await cli(scene, "replay", "list", "--json")
    assert replay_id in {r["id"] for r in json.loads(listed.stdout)}


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--since", "yesterday"], 2),
        (["--version", "9"], 1),
        (["--device", "bad id!"], 2),
    ],
)
async def test_bad_requests_are_one_line(scene: Scene, args: list[str], code: int) -> None:
    result = await cli(scene, "replay", scene.device_type, *args)
    assert result.returncode == code
    one_line(result)


async def test_unknown_types_and_replays_are_one_line(scene: Scene) -> None:
    for args in (["replay", "nosuchtype"], ["replay", "show", "nosuchreplay"]):
        result = await cli(scene, *args)
        assert result.returncode == 1, (args, result.stderr)
        one_line(result)


async def test_check_against_refuses_a_regressing_version_unless_forced(
    scene: Scene, tmp_path: Path
) -> None:
    await scene.uplinks([b"\x01", b"\x03"])
    parsers = SQLParserRepository(scene.engine)
    versions = len(await parsers.list_versions(scene.device_type))
    regressing = source_file(tmp_path, V2 + "\n# fails on 3\n")
    refused = await cli(scene, "parser", "upload", scene.device_type, str(regressing),
                        "--check-against", "1h")  # fmt: skip
    assert refused.returncode == 1
    assert "newly failing" in refused.stderr
    assert len(await parsers.list_versions(scene.device_type)) == versions
    forced = await cli(scene, "parser", "upload", scene.device_type, str(regressing),
                       "--check-against", "1h", "--force")  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    assert len(await parsers.list_versions(scene.device_type)) == versions + 1


async def test_check_against_accepts_a_version_that_fails_nothing_new(
    scene: Scene, tmp_path: Path
) -> None:
    await scene.uplinks([b"\x01", b"\x04"])
    fixed = source_file(tmp_path, V1.replace("if t == 4:", "if t == 99:"))
    result = await cli(scene, "parser", "upload", scene.device_type, str(fixed),
                       "--check-against", "1h", "--no-activate")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "1 newly passing" in result.stderr


async def test_ctrl_c_stops_a_replay_that_can_be_resumed(scene: Scene) -> None:
    await scene.uplinks([b"\x01"] * 40)
    process = await asyncio.create_subprocess_exec(
        str(BIN / "preservarium"), "replay", scene.device_type, "--since", "10m", "--rate", "4",
        env={**os.environ, **scene.env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        replays = SQLReplayRepository(scene.engine)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while not [r for r in await replays.list()
                   if r.device_type == scene.device_type and r.counts.get("replayed")]:  # fmt: skip
            assert loop.time() < deadline and process.returncode is None
            await asyncio.sleep(0.1)
        process.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    (stored,) = [r for r in await replays.list() if r.device_type == scene.device_type]
    assert process.returncode == 130 and stored.status == "interrupted"
    assert f"--resume {stored.id}" in one_line_of(err.decode())


def one_line_of(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), stderr
    return lines[0]


async def test_resuming_a_replay_another_process_runs_is_refused_in_one_line(
    scene: Scene,
) -> None:
    repository = SQLReplayRepository(scene.engine)
    window = scene.window()
    stored = await repository.create(ReplayRecord(
        id=uuid.uuid4().hex[:12], device_type=scene.device_type, version=1,
        since=window.since, until=window.until, device_id=None, source="raw", rate=10,
    ))  # fmt: skip
    await repository.acquire(stored.id, Holder("0123456789abcdef", "gw-2", 48213), 60)
    result = await cli(scene, "replay", "--resume", stored.id)
    assert result.returncode == 1
    assert re.fullmatch(
        rf"error: replay {stored.id} is running in pid 48213 on host gw-2; lease until "
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",
        one_line(result),
    )
