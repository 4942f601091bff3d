"""What every repository shares: a session factory and one place that maps DB errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from preservarium.db.engine import make_sessionmaker
from preservarium.errors import ConflictError, DatabaseUnavailableError, RepositoryError


class SQLRepository:
    """Base of the SQL repositories: sessions, dialect-aware inserts, error mapping."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sessions = make_sessionmaker(engine)

    @property
    def engine(self) -> AsyncEngine:
        """The engine the repository runs on."""
        return self._engine

    @property
    def dialect(self) -> str:
        """`postgresql` or `sqlite`."""
        return self._engine.dialect.name

    def insert(self, table: Any) -> postgresql.Insert | sqlite.Insert:
        """An INSERT that supports ON CONFLICT on both backends."""
        if self.dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction; SQLAlchemy errors leave as RepositoryError."""
        try:
            async with self._sessions() as session, session.begin():
                yield session
        except IntegrityError as exc:
            raise ConflictError(str(exc.orig)) from exc
        except (OperationalError, OSError, DBAPIError) as exc:
            if (
                isinstance(exc, DBAPIError)
                and not exc.connection_invalidated
                and not isinstance(exc, OperationalError)
            ):
                raise RepositoryError(str(exc.orig)) from exc
            # The driver's own message: str(exc) adds the statement and its parameters.
            reason = getattr(exc, "orig", None) or exc
            raise DatabaseUnavailableError(f"database unavailable: {reason}") from exc
