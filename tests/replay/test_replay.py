"""Replays against the real broker and sandbox: one stamped result per raw uplink."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from preservarium.replay import ReplayError, originals
from preservarium.replay.service import ReplayRequest
from preservarium.repositories import SQLParserRepository, SQLReplayRepository
from preservarium.repositories.replays import DONE
from preservarium.sandbox_client import SandboxClient
from preservarium_sandbox.server import SandboxServer

from tests.replay.conftest import Scene


def stamped(values: list[dict[str, Any]], replay_id: str) -> list[dict[str, Any]]:
    return [v for v in values if (v.get("replay") or {}).get("id") == replay_id]


async def test_a_replay_publishes_one_stamped_result_per_raw_uplink(
    scene: Scene, client: SandboxClient
) -> None:
    ids = await scene.uplinks([b"\x01", b"\x02", b"\x03", b"\x04"])
    await scene.uplinks([b"\x01"], age_s=3600)  # before the window
    await scene.uplinks([b"\x01"], device_type="another")  # another type
    parsed, failed = scene.reader("uplink.parsed"), scene.reader("uplink.failed")
    await parsed.start()
    await failed.start()
    try:
        summary = await scene.replays(client).start(
            ReplayRequest(scene.device_type, scene.window(), version=2)
        )
        replay_id = summary.replay.id
        results = await parsed.wait_for(
            lambda v: v.get("replay", {}).get("id") == replay_id, count=3
        )
        failures = await failed.wait_for(lambda v: v.get("replay", {}).get("id") == replay_id)
        await asyncio.sleep(0.5)  # anything more would be a duplicate
        results, failures = (stamped(r.values(), replay_id) for r in (parsed, failed))
    finally:
        await parsed.stop()
        await failed.stop()
    of = Counter(v["replay"]["of"] for v in results + failures)
    assert of == Counter(ids)
    assert {v["replay"]["of"]: v["data"]["t"] for v in results} == {
        ids[0]: 1,
        ids[1]: 20,
        ids[3]: 4,
    }
    assert failures[0]["replay"]["of"] == ids[2] and failures[0]["error"]["kind"] == "runtime_error"
    assert failures[0]["payload_b64"] == "Aw=="
    for value in results + failures:
        assert value["parser"] == {"name": scene.device_type, "version": 2}
        assert value["id"] not in ids and value["device_id"] == "dev-1"
    assert summary.counts["replayed"] == 4 and summary.counts["parsed"] == 3
    # Tansu does not answer offsets by time: the window was found by the scan.
    assert summary.offsets_by_time is False
    stored = await SQLReplayRepository(scene.engine).get(replay_id)
    assert stored.status == DONE and stored.counts["replayed"] == 4
    assert all(span.done for span in stored.positions.values())


async def test_only_the_device_and_the_failed_uplinks_asked_for(
    scene: Scene, client: SandboxClient
) -> None:
    await scene.uplinks([b"\x01", b"\x04"], device_id="dev-9")
    await scene.uplinks([b"\x01", b"\x04"], device_id="dev-1")
    replays = scene.replays(client)
    one = await replays.start(ReplayRequest(scene.device_type, scene.window(), device_id="dev-9"))
    assert one.counts["replayed"] == 2
    failed = await replays.start(
        ReplayRequest(
            scene.device_type, scene.window(), version=2, device_id="dev-9", source="failed"
        )
    )
    assert (failed.counts["replayed"], failed.counts["parsed"]) == (1, 1)


async def test_route_contacts_are_replayed_only_as_the_device_delivered(
    scene: Scene, client: SandboxClient
) -> None:
    """A route contact (no device id in the raw record) is replayed only when the gateway
    delivered it at the time, and only as the device it was delivered as."""
    delivered = await scene.uplinks([b"\x01"], device_id=None)
    await scene.uplinks([b"\x01"], device_id=None, original=False)  # never delivered
    renamed = await scene.uplinks([bytes([200])], device_id=None)  # identify() now differs
    parsed, failed = scene.reader("uplink.parsed"), scene.reader("uplink.failed")
    await parsed.start()
    await failed.start()
    try:
        summary = await scene.replays(client).start(
            ReplayRequest(scene.device_type, scene.window(), version=2)
        )
        rid = summary.replay.id
        ok = await parsed.wait_for(lambda v: v.get("replay", {}).get("id") == rid)
        refused = await failed.wait_for(lambda v: v.get("replay", {}).get("id") == rid)
    finally:
        await parsed.stop()
        await failed.stop()
    assert summary.counts["skipped"] == 1 and summary.counts["replayed"] == 2
    assert ok[0]["replay"]["of"] == delivered[0] and ok[0]["device_id"] == "route-dev"
    assert refused[0]["replay"]["of"] == renamed[0]
    assert refused[0]["error"]["kind"] == "device_mismatch"


async def test_the_rate_bounds_the_replay(scene: Scene, client: SandboxClient) -> None:
    await scene.uplinks([b"\x01"] * 30)
    loop = asyncio.get_running_loop()
    started = loop.time()
    summary = await scene.replays(client).start(
        ReplayRequest(scene.device_type, scene.window(), rate=20)
    )
    # 20 go at once (a full bucket), the other 10 need half a second more.
    assert summary.counts["replayed"] == 30 and loop.time() - started >= 0.45


@pytest.mark.parametrize(
    ("request_kw", "kind"),
    [
        ({"version": 9}, "unknown_version"),
        ({"device_type": "nosuchtype"}, "unknown_type"),
        ({"source": "elsewhere"}, "bad_request"),
    ],
)
async def test_requests_that_cannot_run_are_refused_with_their_kind(
    scene: Scene, client: SandboxClient, request_kw: dict[str, Any], kind: str
) -> None:
    values: dict[str, Any] = {
        "device_type": scene.device_type,
        "window": scene.window(),
        **request_kw,
    }
    with pytest.raises(ReplayError) as caught:
        await scene.replays(client).start(ReplayRequest(**values))
    assert caught.value.kind == kind and not caught.value.retriable


async def test_a_quarantined_version_stops_the_replay_instead_of_failing_every_uplink(
    scene: Scene, client: SandboxClient
) -> None:
    looping = "def parse(payload, metadata):\n    while True:\n        pass\n"
    version = (await SQLParserRepository(scene.engine).upload(
        scene.device_type, looping, activate=False)).version  # fmt: skip
    await scene.uplinks([b"\x01"] * 12)
    request = ReplayRequest(scene.device_type, scene.window(), version=version, rate=8)
    with pytest.raises(ReplayError) as caught:
        await scene.replays(client).start(request)
    assert caught.value.kind == "quarantined" and caught.value.retriable
    (stored,) = [r for r in await SQLReplayRepository(scene.engine).list()
                 if r.device_type == scene.device_type]  # fmt: skip
    assert stored.status == "failed" and stored.counts["failed"] < 12


CONTEXT = """
def parse(payload, metadata):
    return {"t": payload[0], "attributes": metadata["attributes"], "of": metadata["uplink_id"]}
"""


async def test_a_replay_gives_parsers_the_devices_attributes_and_the_original_uplink_id(
    scene: Scene, client: SandboxClient
) -> None:
    from preservarium.repositories import SQLDeviceRepository

    await SQLDeviceRepository(scene.engine).register(
        "dev-ctx", scene.device_type, attributes={"site": "north"}
    )
    version = (await SQLParserRepository(scene.engine).upload(scene.device_type, CONTEXT)).version
    ids = await scene.uplinks([b"\x07"], device_id="dev-ctx", original=False)
    parsed = scene.reader("uplink.parsed")
    await parsed.start()
    try:
        summary = await scene.replays(client).start(
            ReplayRequest(scene.device_type, scene.window(), version=version, device_id="dev-ctx")
        )
        rid = summary.replay.id
        (result,) = await parsed.wait_for(lambda v: v.get("replay", {}).get("id") == rid)
    finally:
        await parsed.stop()
    assert result["data"] == {"t": 7, "attributes": {"site": "north"}, "of": ids[0]}


async def test_a_replay_asks_the_sandbox_in_the_background_lane(
    scene: Scene, client: SandboxClient, sandbox: SandboxServer
) -> None:
    def background() -> float:
        value = sandbox.metrics.registry.get_sample_value(
            "preservarium_sandbox_lane_calls_total", {"lane": "background"}
        )
        return value or 0.0

    ids = await scene.uplinks([b"\x01", b"\x02", b"\x03"])
    before = background()
    summary = await scene.replays(client).start(
        ReplayRequest(scene.device_type, scene.window(), version=2)
    )
    assert summary.counts["replayed"] == len(ids)
    assert background() - before == len(ids)


async def test_the_originals_of_a_past_window_are_read_to_a_lag_past_its_end(
    scene: Scene,
) -> None:
    """A window of the past: what was published for it at the time is found, even a
    little late, and what came after it (live traffic since) is not read for a new
    replay; a resumed one reads to the end, where its own results are."""
    # The bound (the window's end plus the lag) falls just after these records are
    # written: the embedded broker answers an offset for a time with its own append time
    # of the first record, which before the bound would end the read at once.
    now_ms = int(time.time() * 1000)
    lag_ms = int(originals.ORIGINAL_LAG_S * 1000)
    bound_ms = now_ms + 30_000
    since_ms, until_ms = bound_ms - lag_ms - 20 * 60_000, bound_ms - lag_ms
    stamps = {
        "in_window": until_ms - 60_000,
        "late_within_lag": bound_ms - 20_000,
        "past_lag": bound_ms + 60_000,
        "an_hour_later": bound_ms + 3_600_000,
    }
    ids: dict[str, str] = {}
    producer = AIOKafkaProducer(bootstrap_servers=scene.bootstrap, acks="all")
    await producer.start()
    try:
        for name, stamp in stamps.items():
            for device in ("dev-1", "dev-2", "dev-3", "dev-4"):  # every partition
                uplink_id = ids[f"{name}/{device}"] = uuid.uuid4().hex
                record = {"v": 1, "id": uplink_id, "device_type": scene.device_type,
                          "device_id": device, "data": {}, "warnings": []}  # fmt: skip
                await producer.send_and_wait(
                    scene.topic("uplink.parsed"), json.dumps(record).encode(),
                    key=device.encode(), timestamp_ms=stamp,
                )  # fmt: skip
    finally:
        await producer.stop()

    async def index(until: int | None) -> set[str]:
        found = await originals.index(
            scene.bootstrap, parsed_topic=scene.topic("uplink.parsed"),
            failed_topic=scene.topic("uplink.failed"), device_type=scene.device_type,
            since_ms=since_ms, until_ms=until, replay_id=None, whole=False,
        )  # fmt: skip
        return {name.split("/")[0] for name, id_ in ids.items() if id_ in found.outcomes}

    assert await index(None) == set(stamps)
    assert await index(until_ms) == {"in_window", "late_within_lag"}
