"""Migrated SQLite databases for tests, copied from one migrated once per run.

Running the migrations costs a few hundred milliseconds a database; copying the file
of a database that has run them costs next to nothing and gives the same schema.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from preservarium.db.migrate import upgrade


class SQLiteTemplate:
    """A migrated SQLite file in `directory`, made on first use, copied for each test."""

    def __init__(self, directory: Path) -> None:
        self._file = directory / "template.db"
        self._made = False

    async def copy(self, path: Path) -> str:
        """A migrated database at `path`; return its URL."""
        if not self._made:
            await upgrade(f"sqlite+aiosqlite:///{self._file}")
            self._made = True
        shutil.copyfile(self._file, path)
        return f"sqlite+aiosqlite:///{path}"
