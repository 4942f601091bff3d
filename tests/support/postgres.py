"""Throwaway PostgreSQL databases for tests: one per test, inside the real server."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from preservarium.db.migrate import upgrade
from sqlalchemy.engine import make_url

DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def server_url() -> str:
    """The PostgreSQL server the suite uses ($PRESERVARIUM_TEST_DATABASE_URL)."""
    return os.environ.get("PRESERVARIUM_TEST_DATABASE_URL", DEFAULT_URL)


async def _admin() -> asyncpg.Connection:
    url = make_url(server_url())
    try:
        return await asyncpg.connect(
            host=url.host,
            port=url.port or 5432,
            user=url.username,
            password=url.password,
            database=url.database,
            timeout=5,
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise RuntimeError(
            f"PostgreSQL is required by the test suite and is not reachable at {server_url()}: "
            f"{exc}"
        ) from exc


async def create_database(prefix: str = "pvt") -> str:
    """Create an empty database; return its SQLAlchemy URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    connection = await _admin()
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return make_url(server_url()).set(database=name).render_as_string(hide_password=False)


async def drop_database(url: str) -> None:
    """Drop a database made by create_database."""
    name = make_url(url).database
    connection = await _admin()
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


@asynccontextmanager
async def migrated_database() -> AsyncIterator[str]:
    """A fresh database with every migration applied, dropped afterwards."""
    url = await create_database()
    try:
        await upgrade(url)
        yield url
    finally:
        await drop_database(url)


async def _connect(url: str) -> asyncpg.Connection:
    parsed = make_url(url)
    return await asyncpg.connect(
        host=parsed.host,
        port=parsed.port or 5432,
        user=parsed.username,
        password=parsed.password,
        database=parsed.database,
        timeout=5,
    )


async def empty_database(url: str) -> None:
    """Remove every row from a migrated database, keeping its schema, so that one database
    serves test after test: creating and migrating one costs about a second, this a few
    milliseconds. Connections a previous test left open are ended first (as DROP DATABASE
    WITH (FORCE) would), so that none of them holds a lock the TRUNCATE waits for."""
    connection = await _connect(url)
    try:
        await connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        tables = await connection.fetch(
            "SELECT quote_ident(tablename) AS name FROM pg_tables "
            "WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        )
        if tables:
            names = ", ".join(row["name"] for row in tables)
            await connection.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    finally:
        await connection.close()
