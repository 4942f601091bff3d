"""The gateway serves the API on its own loop when `api_listen` is set: the real
GatewayServer, its database, broker and sandbox; a taken port is a clear start error."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from preservarium.api_access import Scope
from preservarium.db.engine import make_engine
from preservarium.repositories import SQLTokenRepository
from preservarium.settings import HostPort
from preservarium_gateway.errors import GatewayStartError
from preservarium_gateway.server import GatewayServer
from preservarium_sandbox.server import SandboxServer
from preservarium_tools.embedded.broker import EmbeddedBroker

from tests.gateway.conftest import gateway_config
from tests.support.kafka import prefix
from tests.support.net import free_port
from tests.support.sqlite import SQLiteTemplate


@pytest.fixture
async def database(tmp_path: Path, sqlite_template: SQLiteTemplate) -> AsyncIterator[str]:
    yield await sqlite_template.copy(tmp_path / "gw.db")


async def _token(url: str) -> str:
    engine = make_engine(url)
    try:
        _, secret = await SQLTokenRepository(engine).create("ops", Scope.READ)
    finally:
        await engine.dispose()
    return secret


async def test_the_gateway_serves_the_api(
    database: str, broker: EmbeddedBroker, api_sandbox: SandboxServer
) -> None:
    port = free_port()
    config = dataclasses.replace(
        gateway_config(database_url=database, bootstrap=broker.bootstrap,
                       sandbox_addr=api_sandbox.config.listen, topic_prefix=prefix()),
        api_listen=HostPort("127.0.0.1", port),
    )  # fmt: skip
    secret = await _token(database)
    async with (
        GatewayServer(config) as gateway,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http,
    ):
        assert gateway.api is not None and gateway.api.port == port
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        listed = await http.get("/api/v1/devices", headers={"Authorization": f"Bearer {secret}"})
        assert listed.status_code == 200 and listed.json()["items"] == []
        assert gateway.supervisor.healthy
        sample = gateway.metrics.registry.get_sample_value(
            "preservarium_gateway_api_requests_total",
            {"route": "/api/v1/devices", "method": "GET", "status": "200"},
        )
        assert sample == 1
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(timeout=2) as http:
            await http.get(f"http://127.0.0.1:{port}/healthz")


async def test_a_taken_port_is_a_start_error(
    database: str, broker: EmbeddedBroker, api_sandbox: SandboxServer
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = dataclasses.replace(
            gateway_config(database_url=database, bootstrap=broker.bootstrap,
                           sandbox_addr=api_sandbox.config.listen, topic_prefix=prefix()),
            api_listen=HostPort("127.0.0.1", taken.getsockname()[1]),
        )  # fmt: skip
        with pytest.raises(GatewayStartError, match="PRESERVARIUM_API_LISTEN"):
            async with GatewayServer(config):
                pass


async def test_api_replays_outlive_their_client_and_stop_with_the_gateway(
    database: str, broker: EmbeddedBroker, api_sandbox: SandboxServer
) -> None:
    from preservarium.repositories import SQLParserRepository, SQLReplayRepository

    from tests.replay.conftest import V1, Scene

    port, topic_prefix = free_port(), prefix()
    config = dataclasses.replace(
        gateway_config(database_url=database, bootstrap=broker.bootstrap,
                       sandbox_addr=api_sandbox.config.listen, topic_prefix=topic_prefix),
        api_listen=HostPort("127.0.0.1", port),
    )  # fmt: skip
    engine = make_engine(database)
    sandbox_engine = make_engine(api_sandbox.config.database_url)
    try:
        _, secret = await SQLTokenRepository(engine).create("replayer", Scope.WRITE)
        scene = Scene(broker.bootstrap, engine, api_sandbox.config.listen, database,
                      prefix=topic_prefix)  # fmt: skip
        for parsers in (engine, sandbox_engine):
            await SQLParserRepository(parsers).upload(scene.device_type, V1)
        await scene.uplinks([bytes([1])] * 10)  # at 1 per second: 9 s at least
        auth = {"Authorization": f"Bearer {secret}"}
        async with GatewayServer(config):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                body = {"device_type": scene.device_type, "rate": 1}
                started = await http.post("/api/v1/replays", json=body, headers=auth)
                assert started.status_code == 202, started.text
            replay_id = started.json()["id"]  # that client is gone; the replay goes on
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                shown: dict[str, Any] = {}
                for _ in range(600):  # 30 s at least: until a first batch is published
                    shown = (await http.get(f"/api/v1/replays/{replay_id}", headers=auth)).json()
                    if shown["status"] != "running" or shown["progress"]["done"] > 0:
                        break
                    await asyncio.sleep(0.05)
                assert shown["status"] == "running" and shown["progress"]["done"] > 0, shown
        stopped = await SQLReplayRepository(engine).get(replay_id)
        assert stopped.status == "interrupted", stopped
        assert 0 < stopped.counts["replayed"] < 10
    finally:
        await engine.dispose()
        await sandbox_engine.dispose()
