"""/api/v1/commands: send publishes the `command.request` record `command send` would,
cancel the status `command cancel` would; list and show read the stored commands."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
from preservarium.repositories import SQLCommandRepository, SQLDeviceRepository

from tests.api.conftest import Api
from tests.support.cli import run_cli
from tests.support.kafka import TopicReader


async def _store(api: Api, request_id: str, device_id: str = "c-dev") -> None:
    await SQLCommandRepository(api.context.engine).add(
        request_id=request_id, device_id=device_id, name="reboot", body='{"params":{"a":1}}',
        expires_at=datetime.now(UTC) + timedelta(hours=1),
    )  # fmt: skip


def _env(api: Api) -> dict[str, str]:
    return {
        "PRESERVARIUM_DATABASE_URL": api.database_url,
        "PRESERVARIUM_KAFKA_BOOTSTRAP": api.context.kafka_bootstrap,
        "PRESERVARIUM_TOPIC_PREFIX": api.context.topics.raw.removesuffix("uplink.raw"),
    }


async def test_send_publishes_what_the_cli_publishes(api: Api, client: httpx.AsyncClient) -> None:
    await SQLDeviceRepository(api.context.engine).register("c-dev", "thermo")
    reader = TopicReader(api.context.kafka_bootstrap, api.context.topics.command_request)
    await reader.start()
    try:
        body = {"device_id": "c-dev", "command": "set", "params": {"s": 5}, "ttl_s": 600,
                "request_id": "from-api"}  # fmt: skip
        response = await client.post("/api/v1/commands", json=body, headers=api.auth("write"))
        assert response.status_code == 202, response.text
        done = run_cli("command", "send", "c-dev", "set", "--params", '{"s": 5}', "--ttl", "600",
                       "--request-id", "from-cli", "--json", env=_env(api))  # fmt: skip
        assert done.returncode == 0, done.stderr
        published = await reader.wait_for(lambda value: True, count=2)
    finally:
        await reader.stop()
    by_id = {value["request_id"]: value for value in published}
    assert by_id["from-api"] == response.json()
    assert by_id["from-cli"] == json.loads(done.stdout)
    assert {**by_id["from-api"], "request_id": "x"} == {**by_id["from-cli"], "request_id": "x"}
    keys = {key for key, _ in reader.records}
    assert keys == {b"c-dev"}


async def test_send_refuses_what_the_cli_refuses(api: Api, client: httpx.AsyncClient) -> None:
    write = api.auth("write")
    unknown = await client.post("/api/v1/commands", json={"device_id": "ghost", "command": "x"},
                                headers=write)  # fmt: skip
    assert unknown.status_code == 404 and "--force" in unknown.json()["detail"]
    for body in (
        {"device_id": "bad id", "command": "x", "force": True},
        {"device_id": "d", "command": "", "force": True},
        {"device_id": "d", "command": "x", "ttl_s": 0, "force": True},
        {"device_id": "d", "command": "x", "params": [], "force": True},
    ):
        response = await client.post("/api/v1/commands", json=body, headers=write)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["errors"]


async def test_list_show_and_cancel(api: Api, client: httpx.AsyncClient) -> None:
    await _store(api, "r-1")
    await _store(api, "r-2", device_id="other")
    read, write = api.auth("read"), api.auth("write")
    listed = (await client.get("/api/v1/commands", params={"device": "c-dev"}, headers=read)).json()
    assert [item["request_id"] for item in listed] == ["r-1"]
    queued = (
        await client.get("/api/v1/commands", params={"status": "queued"}, headers=read)
    ).json()
    assert {item["request_id"] for item in queued} == {"r-1", "r-2"}
    shown = (await client.get("/api/v1/commands/r-1", headers=read)).json()
    assert shown["status"] == "queued" and shown["params"] == {"a": 1}
    status = TopicReader(api.context.kafka_bootstrap, api.context.topics.command_status)
    await status.start()
    try:
        cancelled = await client.delete("/api/v1/commands/r-1", headers=write)
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "expired" and cancelled.json()["cancelled_now"]
        records = await status.wait_for(lambda value: value["request_id"] == "r-1")
    finally:
        await status.stop()
    assert records[0]["status"] == "expired" and records[0]["reason"] == "cancelled"
    assert (await client.get("/api/v1/commands/nope", headers=read)).status_code == 404
    bad_status = await client.get("/api/v1/commands", params={"status": "lost"}, headers=read)
    assert bad_status.status_code == 422


async def test_cli_and_api_agree_on_cancel(api: Api, client: httpx.AsyncClient) -> None:
    await _store(api, "via-api")
    await _store(api, "via-cli")
    from_api = (await client.delete("/api/v1/commands/via-api", headers=api.auth("write"))).json()
    done = run_cli("command", "cancel", "via-cli", "--json", env=_env(api))
    assert done.returncode == 0, done.stderr
    from_cli = json.loads(done.stdout)
    from_api.pop("cancelled_now")
    ignore = {"request_id", "created_at", "expires_at"}
    assert {k: v for k, v in from_api.items() if k not in ignore} == {
        k: v for k, v in from_cli.items() if k not in ignore
    }
