"""Parser activations pushed as they happen: PostgreSQL LISTEN/NOTIFY.

SQLParserRepository announces every activation (an upload that activates, or
`activate`) with `pg_notify` on PARSER_CHANNEL, delivered when its transaction commits.
ParserChanges listens on a connection of its own and calls `on_change()` for each
announcement, and once after every (re)connect, since announcements made while it was
not listening are lost. On SQLite there is nothing to listen to: callers keep polling.
A lost connection is expected (the loop reconnects, polling covers the gap); any other
failure is left to the loop's supervisor, which logs, counts and restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from preservarium.lifecycle import AsyncLifecycle
from preservarium.supervisor import Supervisor

log = logging.getLogger("preservarium.parser_changes")
PARSER_CHANNEL = "preservarium_parsers"
# How a listening connection is lost (asyncpg's own errors come unwrapped from add_listener).
CONNECTION_ERRORS = (
    OSError, TimeoutError, SQLAlchemyError, asyncpg.PostgresError, asyncpg.InterfaceError,
)  # fmt: skip


class ParserChanges(AsyncLifecycle):
    """Calls `on_change()` when a parser version is activated (PostgreSQL only)."""

    def __init__(
        self,
        engine: AsyncEngine,
        on_change: Callable[[], None],
        *,
        on_listening: Callable[[bool], None] = lambda listening: None,
        retry_s: float = 1.0,
        max_retry_s: float = 10.0,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._url = engine.url
        self._supported = engine.dialect.name == "postgresql"
        self._on_change = on_change
        self._on_listening = on_listening
        self._retry_s = retry_s
        self._max_retry_s = max_retry_s
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._supervisor = supervisor or Supervisor()
        self.listening = False

    @property
    def supported(self) -> bool:
        """True on PostgreSQL."""
        return self._supported

    async def start(self) -> None:
        """Start listening in the background (a no-op on SQLite)."""
        if not self._supported or self._task is not None:
            return
        self._stopping.clear()
        self._task = self._supervisor.spawn("parser-changes", self._run)

    async def stop(self) -> None:
        """Stop listening and close the connection; idempotent."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(task, 10)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        # A connection outside the service's pool: it is held for as long as it listens.
        engine = create_async_engine(self._url, poolclass=NullPool)
        delay = self._retry_s
        try:
            while not self._stopping.is_set():
                try:
                    await self._listen(engine)
                except CONNECTION_ERRORS as exc:
                    log.warning("parser change listener lost", extra={"error": repr(exc)})
                finally:
                    if self.listening:  # it had connected: the backoff starts afresh
                        delay = self._retry_s
                    self._set_listening(False)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                delay = min(delay * 2, self._max_retry_s)
        finally:
            await engine.dispose()

    async def _listen(self, engine: AsyncEngine) -> None:
        lost = asyncio.Event()

        def notified(*_: Any) -> None:
            self._on_change()

        def terminated(*_: Any) -> None:
            lost.set()

        async with engine.connect() as connection:
            raw = await connection.get_raw_connection()
            driver: Any = raw.driver_connection  # asyncpg.Connection
            await driver.add_listener(PARSER_CHANNEL, notified)
            driver.add_termination_listener(terminated)
            self._set_listening(True)
            log.info("listening for parser changes", extra={"channel": PARSER_CHANNEL})
            self._on_change()  # whatever was announced while nobody listened
            stop = asyncio.ensure_future(self._stopping.wait())
            gone = asyncio.ensure_future(lost.wait())
            try:
                await asyncio.wait({stop, gone}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
                gone.cancel()
            if lost.is_set():
                raise OSError("the database closed the listening connection")
            with contextlib.suppress(Exception):  # leaving: the connection is closed anyway
                await driver.remove_listener(PARSER_CHANNEL, notified)

    def _set_listening(self, listening: bool) -> None:
        if listening != self.listening:
            self.listening = listening
            self._on_listening(listening)
