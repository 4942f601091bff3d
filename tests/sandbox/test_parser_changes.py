"""Hot reload on PostgreSQL by LISTEN/NOTIFY: an activation serves at once, not at the
next poll, and the listener comes back by itself when the database drops it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from preservarium.db.engine import make_engine
from preservarium.db.migrate import upgrade
from preservarium.repositories import SQLParserRepository
from preservarium.repositories.parser_changes import ParserChanges
from preservarium.sandbox_client import SandboxClient
from preservarium_sandbox.server import SandboxServer
from sqlalchemy import text

from tests.sandbox.conftest import sandbox_config, wait_for_version
from tests.support.postgres import migrated_database
from tests.support.waiting import until

ECHO = "def parse(payload, metadata):\n    return {'v': VERSION}\nVERSION = 1\n"
SLOW_POLL_S = 60.0  # nothing but a notification can explain a reload faster than this


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with migrated_database() as url:
        yield url


async def test_an_activation_serves_at_once_and_survives_a_dropped_listener(
    pg_url: str,
) -> None:
    engine = make_engine(pg_url)
    parsers = SQLParserRepository(engine)
    await parsers.upload("notified", ECHO)
    config = sandbox_config(pg_url, refresh_interval_s=SLOW_POLL_S)
    try:
        async with SandboxServer(config) as server, SandboxClient(config.listen) as client:
            changes = server.catalog.changes
            await until(lambda: changes.listening)
            await wait_for_version(client, "notified", 1)

            await parsers.upload("notified", ECHO.replace("VERSION = 1", "VERSION = 2"))
            assert await wait_for_version(client, "notified", 2) < 1.0
            await parsers.activate("notified", 1)
            assert await wait_for_version(client, "notified", 1) < 1.0

            async with engine.connect() as connection:
                dropped = await connection.scalar(text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND query ILIKE 'LISTEN%'"
                ))  # fmt: skip
            assert dropped == 1
            await until(lambda: not changes.listening, 5)
            # Announced while nobody listens: the listener catches up when it is back.
            await parsers.activate("notified", 2)
            assert await wait_for_version(client, "notified", 2, timeout_s=10) < 10
            await until(lambda: changes.listening)
            await parsers.activate("notified", 1)
            assert await wait_for_version(client, "notified", 1) < 1.0
    finally:
        await engine.dispose()


async def test_sqlite_has_no_listener_and_keeps_polling(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"
    await upgrade(url)
    engine = make_engine(url)
    calls: list[bool] = []
    changes = ParserChanges(engine, lambda: calls.append(True))
    async with changes:
        await asyncio.sleep(0.1)
        assert not changes.supported and not changes.listening and not calls
    await engine.dispose()
