"""`preservarium device import FILE`: devices from CSV, JSON or YAML, all or nothing."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer

from preservarium_tools.cli.common import console, err_console, fail, note, print_json, settings
from preservarium_tools.cli.database import migrated_database

if TYPE_CHECKING:
    from preservarium.settings import Settings
    from preservarium.usecases.device_import import ImportResult, Progress
    from preservarium.usecases.errors import InvalidInputError
    from preservarium.usecases.import_rows import ImportFormat

# Below this many credentials to issue, a progress bar would only flicker.
PROGRESS_FROM = 50


def import_file(
    file: Path = typer.Argument(..., metavar="FILE"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check and report; write nothing."),
    format_name: str | None = typer.Option(
        None, "--format", metavar="csv|json|yaml", help="Default: from FILE's extension."
    ),
    force: bool = typer.Option(False, "--force", help="Accept types without an active parser."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable report."),
) -> None:
    """Register or update the devices of FILE: CSV with a header (id,type[,auth][,attributes]
    with attributes a JSON object), or a JSON or YAML list of such objects.

    The whole file is checked first; if any row is wrong nothing is written and every bad
    row is listed. Importing the same file again changes nothing. Credentials of new
    devices (and of devices whose auth changes) are printed once.
    """
    fmt = _format(file, format_name)
    try:
        data = file.read_bytes()
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}", code=2)
    config = settings()
    result = _run(config, data, fmt, dry_run=dry_run, force=force, as_json=as_json)
    if as_json:
        print_json(result.to_json())
        return
    _print_report(result)


def _format(file: Path, name: str | None) -> ImportFormat:
    from preservarium.usecases.import_rows import ImportFormat

    if name is not None:
        try:
            return ImportFormat(name.lower())
        except ValueError:
            fail(f"invalid --format {name!r}: use csv, json or yaml", code=2)
    guessed = ImportFormat.guess(file.name)
    if guessed is None:
        fail(f"cannot tell the format of {file.name}: name it .csv, .json or .yaml, or "
             "pass --format", code=2)  # fmt: skip
    return guessed


def _run(
    config: Settings, data: bytes, fmt: ImportFormat, *, dry_run: bool, force: bool,
    as_json: bool,
) -> ImportResult:  # fmt: skip
    from preservarium.usecases.device_import import import_devices
    from preservarium.usecases.errors import InvalidInputError

    from preservarium_tools.cli.common import run
    from preservarium_tools.cli.device_cmds import secret_box

    async def body(progress: Progress) -> ImportResult | InvalidInputError:
        async with migrated_database(config) as engine:
            try:
                return await import_devices(
                    engine, secret_box(config), data, fmt,
                    dry_run=dry_run, force=force, progress=progress,
                )  # fmt: skip
            except InvalidInputError as exc:  # every bad row is listed, not one line
                return exc

    with _progress(enabled=not as_json) as progress:
        result = run(lambda: body(progress))
    if isinstance(result, InvalidInputError):
        _refuse(result, as_json=as_json)
    return result


def _refuse(exc: InvalidInputError, *, as_json: bool) -> NoReturn:
    if as_json:
        errors = [{"where": error.field, "message": error.message} for error in exc.errors]
        print_json({"ok": False, "error": str(exc), "errors": errors})
        raise SystemExit(exc.exit_code)
    for error in exc.errors:
        note(f"{error.field}: {error.message}")
    fail(str(exc), code=exc.exit_code)


@contextmanager
def _progress(*, enabled: bool) -> Iterator[Progress]:
    """A rich progress bar on a terminal, once there are enough rows to wait for."""
    if not enabled or not sys.stderr.isatty():
        yield lambda done, total: None
        return
    from rich.progress import Progress as Bar

    with Bar(console=err_console, transient=True) as bar:
        task = bar.add_task("issuing credentials", total=None, visible=False)

        def show(done: int, total: int) -> None:
            if total >= PROGRESS_FROM:
                bar.update(task, completed=done, total=total, visible=True)

        yield show


def _print_report(result: ImportResult) -> None:
    from preservarium.usecases.device_import import Outcome

    from preservarium_tools.cli.device_credentials import ONCE

    counts = ", ".join(f"{result.count(outcome)} {outcome.value}" for outcome in Outcome)
    prefix = "dry run, nothing written: would be " if result.dry_run else ""
    console.print(f"{prefix}{counts}", highlight=False)
    if result.credentials:
        console.print(f"credentials, {ONCE}:", highlight=False)
    for document in result.credentials:
        flat = {**document.pop("oscore", {}), **document}
        line = "  ".join(f"{key}={value}" for key, value in flat.items() if key != "device_id")
        console.print(f"  {document['device_id']}  {line}", highlight=False, markup=False,
                      soft_wrap=True)  # fmt: skip
