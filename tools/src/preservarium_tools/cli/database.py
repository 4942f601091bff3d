"""The database the CLI works on: where it is, and a refusal to use one that is not ready.

The CLI never creates nor migrates a database by itself (`preservarium db upgrade` and
`preservarium up` do): a command that opened a fresh SQLite file would succeed into a
database nobody else reads. So every command that opens the database first checks that
it exists and carries the schema this SDK ships, and otherwise says what to run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from preservarium.errors import PreservariumError

if TYPE_CHECKING:  # SQLAlchemy is imported by the commands that open the database
    from preservarium.settings import Settings
    from sqlalchemy.engine import Connection
    from sqlalchemy.ext.asyncio import AsyncEngine

VARIABLE = "PRESERVARIUM_DATABASE_URL"
UPGRADE = "run `preservarium db upgrade` (or start `preservarium up`)"


class DatabaseNotReadyError(PreservariumError):
    """The database is missing, unreachable or not migrated: infrastructure, exit 2."""

    exit_code = 2


def location(url: str) -> str:
    """The database URL as it may be shown: without its password, with its variable."""
    from sqlalchemy.engine import make_url

    return f"{make_url(url).render_as_string(hide_password=True)}  ({VARIABLE})"


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for PostgreSQL and in-memory SQLite)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    return Path(database)


@asynccontextmanager
async def migrated_database(config: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine on the configured database, once it is known to exist at the head
    revision; DatabaseNotReadyError (one line saying what to run) otherwise."""
    from preservarium.db.engine import make_engine

    url = config.database_url
    path = sqlite_file(url)
    if path is not None and not path.is_file():  # connecting would create it
        raise DatabaseNotReadyError(f"no database at {location(url)}: {UPGRADE}")
    engine = make_engine(url)
    try:
        await _check_revision(engine, url)
        yield engine
    finally:
        await engine.dispose()


async def _check_revision(engine: AsyncEngine, url: str) -> None:
    from preservarium.db.migrate import shipped_head
    from sqlalchemy.exc import SQLAlchemyError

    try:
        async with engine.connect() as connection:
            current = await connection.run_sync(_current_revision)
    except (SQLAlchemyError, OSError) as exc:
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
        message = f"cannot open the database at {location(url)}: {reason}"
        raise DatabaseNotReadyError(message) from exc
    head = shipped_head()
    if current is None:
        raise DatabaseNotReadyError(f"the database at {location(url)} has no schema: {UPGRADE}")
    if current != head:
        raise DatabaseNotReadyError(
            f"the database at {location(url)} is at revision {current}, "
            f"this preservarium needs {head}: {UPGRADE}"
        )


def _current_revision(connection: Connection) -> str | None:
    from sqlalchemy import inspect, text

    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
