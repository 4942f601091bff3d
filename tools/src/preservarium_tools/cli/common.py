"""What every CLI command shares: settings, the database, output and one-line errors."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from preservarium.errors import PreservariumError
from preservarium.usecases.jsonable import json_default
from rich.console import Console
from rich.markup import escape

from preservarium_tools.cli.pipe_safe import pipe_safe

if TYPE_CHECKING:  # pydantic is imported when a command reads its settings, not for --help
    from preservarium.settings import Settings

T = TypeVar("T")
# Output never raises once its reader has gone (see pipe_safe): a command keeps going,
# and `up` still stops its services.
console = Console(file=pipe_safe(sys.stdout))
err_console = Console(file=pipe_safe(sys.stderr))


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one clear line on stderr and exit."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise SystemExit(code)


def settings() -> Settings:
    """The settings, or a one-line error naming the bad variable (exit 2)."""
    from preservarium.settings import load_settings

    try:
        return load_settings()
    except PreservariumError as exc:
        fail(str(exc), code=2)


def run(coro_factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run an async command body; SDK errors become one line and exit 1 (2 for an error
    of the infrastructure, such as a database that cannot be reached)."""
    try:
        return asyncio.run(coro_factory())
    except PreservariumError as exc:
        code = getattr(exc, "exit_code", 2 if getattr(exc, "retriable", False) else 1)
        fail(" ".join(str(exc).split()), code=code)


def note(text: str) -> None:
    """A line for the human on stderr, printed as is (it may quote user input)."""
    err_console.print(text, highlight=False, markup=False, soft_wrap=True)


def stored_in(config: Settings) -> None:
    """Say where a write went: the database and the variable that chooses it."""
    from preservarium_tools.cli.database import location

    note(f"stored in {location(config.database_url)}")


def print_json(value: Any) -> None:
    """Machine-readable output on stdout."""
    sys.stdout.write(json.dumps(value, default=json_default, ensure_ascii=False) + "\n")


def when(value: datetime | None) -> str:
    """A timestamp for humans."""
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")
