"""Alembic migrations, run programmatically (`preservarium db upgrade`).

Alembic is imported when a migration runs, not with this module: every CLI command and
both services import this module, and Alembic (with Mako) costs about half a second.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import Connection

from preservarium.db.engine import make_engine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    """An Alembic config pointing at the migrations shipped in this package."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str | None:
    """The newest migration shipped with this SDK."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _upgrade(connection: Connection, revision: str) -> None:
    from alembic import command

    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _current(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


async def upgrade(url: str, revision: str = "head") -> str | None:
    """Apply migrations up to `revision`; return the revision now current."""
    engine = make_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade, revision)
        async with engine.connect() as connection:
            return await connection.run_sync(_current)
    finally:
        await engine.dispose()


_REVISION_LINE = re.compile(r"""^(down_revision|revision)\s*(?::[^=]*)?=\s*["']?([^"'\s]*)""", re.M)


def shipped_head() -> str | None:
    """The newest migration, read from the revision files without importing Alembic.

    The CLI checks a database's revision before every command; Alembic's own
    ScriptDirectory would add about a second to each of them.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        for name, value in _REVISION_LINE.findall(path.read_text(encoding="utf-8")):
            target = revisions if name == "revision" else parents
            if value and value != "None":
                target.add(value)
    heads = revisions - parents
    return next(iter(heads)) if len(heads) == 1 else None
