"""The sandbox's background loops run supervised: the catalog's poller and the parser
change listener, each made to fail once, are counted and restarted; the gRPC health
service answers NOT_SERVING while one is down and SERVING once it runs again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from preservarium.db.engine import make_engine
from preservarium.db.migrate import upgrade
from preservarium.repositories import SQLParserRepository
from preservarium.repositories.parser_changes import ParserChanges
from preservarium.sandbox_client import SandboxClient
from preservarium.sandbox_probe import check_sandbox
from preservarium.settings import parse_host_port
from preservarium.supervisor import Backoff, Supervisor
from preservarium_sandbox.server import SandboxServer

from tests.sandbox.conftest import sandbox_config, wait_for_version
from tests.support.postgres import migrated_database
from tests.support.supervision import HeldPause
from tests.support.waiting import until

BACKOFF = Backoff(initial_s=0.2, max_s=0.2)
ECHO = "def parse(payload, metadata):\n    return {'v': VERSION}\nVERSION = 1\n"


async def serving(server: SandboxServer) -> bool:
    address = parse_host_port(server.config.listen)
    ok, _ = await asyncio.to_thread(check_sandbox, address, service="", timeout_s=2)
    return ok


async def until_serving(server: SandboxServer, want: bool) -> None:
    for _ in range(300):
        if await serving(server) == want:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the health service never said serving={want}")


async def test_a_failing_catalog_poll_is_restarted_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"
    await upgrade(url)
    engine = make_engine(url)
    parsers = SQLParserRepository(engine)
    await parsers.upload("polled", ECHO)
    server = SandboxServer(sandbox_config(url))
    server.supervisor.backoff = BACKOFF
    held = HeldPause()
    server.supervisor.pause = held
    try:
        async with server, SandboxClient(server.config.listen, timeout_s=5) as client:
            assert await serving(server)
            original = SQLParserRepository.active_parsers
            calls: list[int] = []

            mine = server.catalog._repository  # the one to fail

            async def active_parsers(self: SQLParserRepository) -> Any:
                # Only this server's catalog fails: a sandbox another test module keeps
                # running on the same event loop polls through the same class.
                if self is mine:
                    calls.append(1)
                    if len(calls) == 1:
                        raise RuntimeError("injected failure")
                return await original(self)

            monkeypatch.setattr(SQLParserRepository, "active_parsers", active_parsers)
            await until_serving(server, False)
            held.release()
            await until_serving(server, True)
            restarts = server.metrics.registry.get_sample_value(
                "preservarium_task_restarts_total", {"task": "parser-catalog"}
            )
            assert restarts == 1
            await parsers.upload("polled", ECHO.replace("VERSION = 1", "VERSION = 2"))
            await wait_for_version(client, "polled", 2)
    finally:
        await engine.dispose()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with migrated_database() as url:
        yield url


async def test_a_failing_change_listener_is_restarted_and_listens_again(pg_url: str) -> None:
    engine = make_engine(pg_url)
    restarts: list[str] = []
    health: list[bool] = []
    supervisor = Supervisor(
        backoff=Backoff(initial_s=0.5), on_restart=restarts.append, on_health=health.append
    )
    calls: list[int] = []

    def on_change() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected failure")

    changes = ParserChanges(engine, on_change, supervisor=supervisor)
    try:
        async with changes:
            await until(lambda: restarts == ["parser-changes"])
            await until(lambda: health == [False, True] and changes.listening)
            seen = len(calls)
            await SQLParserRepository(engine).upload("announced", ECHO)
            await until(lambda: len(calls) > seen)
    finally:
        await engine.dispose()
