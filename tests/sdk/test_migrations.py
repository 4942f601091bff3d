"""The migrations build exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from preservarium.db.migrate import head_revision, upgrade
from preservarium.db.models import Base
from sqlalchemy.ext.asyncio import AsyncEngine


async def test_schema_matches_models(engine: AsyncEngine) -> None:
    def diff(connection):  # type: ignore[no-untyped-def]
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)

    async with engine.connect() as connection:
        assert await connection.run_sync(diff) == []


async def test_upgrade_is_idempotent(database_url: str) -> None:
    assert await upgrade(database_url) == head_revision()
    assert await upgrade(database_url) == head_revision()
