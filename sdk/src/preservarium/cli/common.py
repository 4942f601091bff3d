"""What every CLI command shares: settings, the database, output and one-line errors."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from rich.console import Console
from rich.markup import escape

from preservarium.errors import PreservariumError
from preservarium.settings import Settings, load_settings

if TYPE_CHECKING:  # SQLAlchemy is imported by the commands that open the database
    from sqlalchemy.ext.asyncio import AsyncEngine

T = TypeVar("T")
console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one clear line on stderr and exit."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise SystemExit(code)


def settings() -> Settings:
    """The settings, or a one-line error naming the bad variable (exit 2)."""
    try:
        return load_settings()
    except PreservariumError as exc:
        fail(str(exc), code=2)


def run(coro_factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run an async command body; SDK errors become one line and exit 1."""
    try:
        return asyncio.run(coro_factory())
    except PreservariumError as exc:
        fail(str(exc))


@asynccontextmanager
async def database(config: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine on a migrated database (the CLI migrates SQLite and opt-in deployments)."""
    from preservarium.db.engine import is_sqlite, make_engine
    from preservarium.db.migrate import upgrade

    if config.db_auto_migrate or is_sqlite(config.database_url):
        await upgrade(config.database_url)
    engine = make_engine(config.database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def print_json(value: Any) -> None:
    """Machine-readable output on stdout."""
    sys.stdout.write(json.dumps(value, default=_default, ensure_ascii=False) + "\n")


def when(value: datetime | None) -> str:
    """A timestamp for humans."""
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")
