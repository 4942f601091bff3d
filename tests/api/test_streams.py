"""Server-Sent Events over the real listener: a record produced to a topic reaches a
stream that follows it, filters apply, the consumer goes when the client does; and
/uplinks returns the newest raw uplinks of a type."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from preservarium.api_access import Scope
from preservarium.repositories import SQLTokenRepository
from preservarium.settings import HostPort
from preservarium.supervisor import Supervisor
from preservarium_gateway.api import create_app
from preservarium_gateway.api.problems import Problem
from preservarium_gateway.api.routes.streams import StreamSlots
from preservarium_gateway.api.server import ApiServer

from tests.api.conftest import Api
from tests.support.kafka import produce

WAIT_S = 30.0


def _raw(device_id: str, device_type: str, n: int) -> bytes:
    record = {"v": 1, "id": f"u-{device_id}-{n}", "received_at": "2026-11-30T12:00:00.000Z",
              "device_id": device_id, "device_type": device_type, "method": "POST", "path": "",
              "confirmable": True, "remote": "127.0.0.1:5683", "payload_b64": "AQI="}  # fmt: skip
    return json.dumps(record).encode()


async def _events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    name = ""
    async for line in lines:
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield name, json.loads(line.removeprefix("data: "))


async def _until_zero(api: Api) -> None:
    gauge = api.context.metrics.api_streams
    async with asyncio.timeout(WAIT_S):
        while gauge._value.get() != 0:  # noqa: ASYNC110 (a gauge has no event)
            await asyncio.sleep(0.05)


async def test_a_produced_record_reaches_a_filtered_stream(
    api: Api, live: httpx.AsyncClient
) -> None:
    topic = api.context.topics.raw
    params = {"device": "wanted", "type": "thermo"}
    async with (
        asyncio.timeout(WAIT_S),
        live.stream(
            "GET", "/api/v1/streams/raw", params=params, headers=api.auth("read")
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()
        assert await anext(lines) == ": stream open"  # positioned at the end: produce now
        await produce(api.context.kafka_bootstrap, topic, _raw("other", "thermo", 1), b"other")
        await produce(api.context.kafka_bootstrap, topic, _raw("wanted", "meter", 2), b"wanted")
        await produce(api.context.kafka_bootstrap, topic, _raw("wanted", "thermo", 3), b"wanted")
        name, record = await anext(_events(lines))
    assert name == "raw" and record["id"] == "u-wanted-3"
    await _until_zero(api)  # the client went: so did the stream and its consumer


async def test_status_records_and_unknown_streams(api: Api, live: httpx.AsyncClient) -> None:
    status = {"v": 1, "request_id": "r", "device_id": "d", "status": "sent",
              "at": "2026-11-30T12:00:00.000Z"}  # fmt: skip
    async with (
        asyncio.timeout(WAIT_S),
        live.stream(
            "GET", "/api/v1/streams/status", params={"type": "thermo"}, headers=api.auth("read")
        ) as response,
    ):
        lines = response.aiter_lines()
        assert await anext(lines) == ": stream open"
        await produce(api.context.kafka_bootstrap, api.context.topics.command_status,
                      json.dumps(status).encode(), b"d")  # fmt: skip
        name, record = await anext(_events(lines))
    assert name == "status" and record == status
    unknown = await live.get("/api/v1/streams/nothing", headers=api.auth("read"))
    assert unknown.status_code == 422
    assert unknown.headers["content-type"].startswith("application/problem+json")
    await _until_zero(api)


async def test_streams_are_bounded(api: Api, live: httpx.AsyncClient) -> None:
    api.app.state.stream_slots.limit = 0  # type: ignore[attr-defined]
    response = await live.get("/api/v1/streams/raw", headers=api.auth("read"))
    assert response.status_code == 503 and response.headers["retry-after"] == "5"


def test_one_token_cannot_take_every_stream() -> None:
    slots = StreamSlots(8)
    assert slots.per_token == 2
    slots.take("script")
    slots.take("script")
    with pytest.raises(Problem) as refused:
        slots.take("script")
    assert refused.value.status == 429
    slots.take("console")  # another token still gets a stream
    slots.give_back("script")
    slots.take("script")
    assert slots.open == 3
    for token in ("script", "script", "console"):
        slots.give_back(token)
    assert slots.open == 0


async def test_a_token_over_its_share_of_streams_gets_429(
    api: Api, live: httpx.AsyncClient
) -> None:
    slots: StreamSlots = api.app.state.stream_slots  # type: ignore[attr-defined]
    share, slots.per_token = slots.per_token, 0
    try:
        response = await live.get("/api/v1/streams/raw", headers=api.auth("read"))
    finally:
        slots.per_token = share
    assert response.status_code == 429 and response.headers["retry-after"] == "5"
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_uplinks_newest_first_of_a_type(api: Api, client: httpx.AsyncClient) -> None:
    topic = api.context.topics.raw
    for n in range(4):
        await produce(api.context.kafka_bootstrap, topic, _raw(f"d{n}", "thermo", n), b"k")
    await produce(api.context.kafka_bootstrap, topic, _raw("m", "meter", 9), b"k")
    response = await client.get("/api/v1/uplinks", params={"type": "thermo", "limit": 3},
                                headers=api.auth("read"))  # fmt: skip
    assert response.status_code == 200, response.text
    assert [record["id"] for record in response.json()] == ["u-d3-3", "u-d2-2", "u-d1-1"]
    none = await client.get("/api/v1/uplinks", params={"type": "nothing"}, headers=api.auth("read"))
    assert none.json() == []


async def test_a_stream_ends_soon_after_its_token_is_revoked(api: Api) -> None:
    # The token was checked when the stream opened, never again: a revoked (leaked)
    # token's stream went on delivering every record for as long as its client stayed.
    name, secret = await SQLTokenRepository(api.context.engine).create("soon-revoked", Scope.READ)
    limits = dataclasses.replace(api.context.limits, token_recheck_s=0.2)
    app = create_app(dataclasses.replace(api.context, limits=limits), console=False)
    server = ApiServer(app=app, listen=HostPort("127.0.0.1", 0), supervisor=Supervisor())
    await server.start()
    try:
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=WAIT_S) as live,
            asyncio.timeout(WAIT_S),
            live.stream(
                "GET", "/api/v1/streams/raw", headers={"Authorization": f"Bearer {secret}"}
            ) as response,  # fmt: skip
        ):
            lines = response.aiter_lines()
            assert await anext(lines) == ": stream open"
            await SQLTokenRepository(api.context.engine).revoke(name.name)
            rest = [line async for line in lines]  # the server ends the stream
        assert ": token revoked" in rest
    finally:
        await server.stop()
