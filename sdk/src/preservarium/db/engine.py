"""Engine and session factory for PostgreSQL (asyncpg) and SQLite (aiosqlite)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.ext.asyncio import AsyncSession as AsyncSession


def is_sqlite(url: str) -> bool:
    """True for the embedded SQLite backend."""
    return make_url(url).get_backend_name() == "sqlite"


def _prepare_sqlite_file(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the writer; busy_timeout makes concurrent writers wait.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """Create the async engine for `url`; SQLite gets its directory and pragmas."""
    if is_sqlite(url):
        _prepare_sqlite_file(url)
        engine = create_async_engine(url, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        kwargs.setdefault("pool_pre_ping", True)
        engine = create_async_engine(url, **kwargs)
    _quiet_cancelled_resets(engine.sync_engine.pool.logger)
    return engine


class CancelledResetFilter(logging.Filter):
    """Drops the pool's "Exception during reset or similar" when the reset (a rollback)
    was cancelled: a task cancelled while it held a connection (Ctrl-C on `replay`, a
    service stopping) cannot roll back, so SQLAlchemy logs an error with a traceback,
    discards the connection and re-raises the cancellation. The database rolls the
    transaction back when the connection closes: nothing is lost, and a user's Ctrl-C
    printed 25 lines of traceback before its own one line. Other reset failures stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        failure = record.exc_info[1] if record.exc_info else None
        return not isinstance(failure, asyncio.CancelledError)


def _quiet_cancelled_resets(logger: logging.Logger | Any) -> None:
    target = getattr(logger, "logger", logger)  # an echoing engine wraps its logger
    if isinstance(target, logging.Logger) and not any(
        isinstance(each, CancelledResetFilter) for each in target.filters
    ):
        target.addFilter(CancelledResetFilter())


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded rows usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)
