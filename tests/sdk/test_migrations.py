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


async def test_the_replay_lease_migrates_down_and_up_keeping_replays(database_url: str) -> None:
    """0009 adds the lease columns to stored replays and takes them away again."""
    from alembic import command
    from preservarium.db.engine import make_engine
    from preservarium.db.migrate import alembic_config
    from sqlalchemy import Connection, inspect, text

    def downgrade(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "0008")

    def columns(connection: Connection) -> set[str]:
        return {column["name"] for column in inspect(connection).get_columns("replays")}

    lease = {"owner_id", "owner_host", "owner_pid", "lease_until"}
    engine = make_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(downgrade)
            assert not await connection.run_sync(columns) & lease
            await connection.execute(text(
                "INSERT INTO replays (id, device_type, version, since, until, source, rate, "
                "status, positions, counts, started_at, updated_at) VALUES ('r1', 'efento', 1, "
                "'2026-11-01 00:00:00', '2026-11-02 00:00:00', 'raw', 100, 'running', '{}', "
                "'{}', '2026-11-01 00:00:00', '2026-11-01 00:00:00')"
            ))  # fmt: skip
        assert await upgrade(database_url) == head_revision()
        async with engine.connect() as connection:
            assert await connection.run_sync(columns) >= lease
            row = (await connection.execute(text("SELECT id, owner_id FROM replays"))).one()
        assert tuple(row) == ("r1", None)
    finally:
        await engine.dispose()
