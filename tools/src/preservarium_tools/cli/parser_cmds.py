"""`preservarium parser ...`: upload, inspect, activate and test parser scripts."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from preservarium.errors import InvalidParserSourceError
from preservarium.ids import is_device_type
from rich.table import Table

from preservarium_tools.cli.common import (
    console,
    err_console,
    fail,
    print_json,
    run,
    settings,
    stored_in,
    when,
)
from preservarium_tools.cli.database import migrated_database

if TYPE_CHECKING:  # `parser test` never opens the database: SQLAlchemy waits until needed
    from preservarium.repositories import ParserRecord, ParserSummary

app = typer.Typer(help="Upload, inspect, activate and test parser scripts.", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="Machine-readable output.")


def read_source(path: Path) -> str:
    """Read and check a parser file; refuse it with one line naming the problem: exit 2
    when it cannot be read (usage), 1 when it is not a valid parser (a script error)."""
    from preservarium.parser_source import validate_source

    try:
        raw = path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}", code=2)
    try:
        return validate_source(raw)
    except InvalidParserSourceError as exc:
        fail(f"{path}: {exc}")


def _uploader() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


@app.command("upload")
def upload(
    device_type: str = typer.Argument(..., metavar="TYPE"),
    file: Path = typer.Argument(..., metavar="FILE"),
    examples_file: Path | None = typer.Option(
        None, "--examples", metavar="YAML", help="Examples that must pass in the sandbox first."
    ),
    no_activate: bool = typer.Option(False, "--no-activate", help="Store without activating."),
    force: bool = typer.Option(
        False,
        "--force",
        help="Store even when the sandbox cannot be reached to check FILE, or when "
        "--check-against finds uplinks that newly fail.",
    ),
    check_window: str | None = typer.Option(
        None,
        "--check-against",
        metavar="WINDOW",
        help="First run FILE over TYPE's uplinks since WINDOW (7d, 2h or RFC 3339); "
        "refuse it if uplinks that passed fail.",
    ),
    as_json: bool = JSON,
) -> None:
    """Check FILE, store it as a new immutable version of TYPE and activate it.

    FILE is compiled in the sandbox service first (and its --examples run there), so the
    sandbox must be running (preservarium up), unless --force. Uploading the source (and
    examples) of a stored version again makes no new version: it says "unchanged" (and
    activates that version unless --no-activate). With --check-against WINDOW, FILE is
    first run over TYPE's real uplinks of WINDOW (a dry-run replay) and refused if
    uplinks that passed fail with it, unless --force. Exit 0 stored, 1 the parser, an
    example or the check refused it, 2 a usage or infrastructure error.
    """
    from preservarium_tools.cli import parser_test_cmd
    from preservarium_tools.cli.parser_upload import require_parse_function

    if not is_device_type(device_type):
        fail(
            f"invalid device type {device_type!r}: use 1 to 64 characters of A-Z a-z 0-9 . _ -",
            code=2,
        )
    source = read_source(file)
    require_parse_function(file, source)
    config = settings()
    examples_text = None
    if examples_file is not None:
        examples_text, examples = parser_test_cmd.read_examples(examples_file)
        parser_test_cmd.check_examples(config.sandbox_addr, source, examples, device_type)
    else:
        parser_test_cmd.check_compiles(config.sandbox_addr, source, force=force)
    if check_window is not None:
        from preservarium_tools.cli.parser_check import check_against

        check_against(config, device_type, source, check_window, force=force)

    async def body() -> tuple[ParserRecord, bool]:
        from preservarium.usecases.parsers import store_version

        async with migrated_database(config) as engine:
            stored = await store_version(
                engine, device_type, source, examples_text,
                activate=not no_activate, uploaded_by=_uploader(),
            )  # fmt: skip
            return stored.record, stored.created

    record, created = run(body)
    stored_in(config)
    if as_json:
        print_json({**_summary(record), "created": created})
        return
    state = "active" if record.active else "stored, not active"
    what = "" if created else "unchanged, "
    err_console.print(
        f"{record.device_type} version {record.version} ({what}{state})", highlight=False
    )
    print(record.version)


@app.command("test")
def try_parser(
    file: Path = typer.Argument(..., metavar="FILE"),
    path: str | None = typer.Option(None, "--path", help='metadata.path (default "").'),
    method: str | None = typer.Option(None, "--method", help="GET, POST (default) or PUT."),
    non: bool = typer.Option(False, "--non", help="A non-confirmable contact."),
    payload_hex: str | None = typer.Option(None, "--payload-hex", metavar="HEX"),
    payload_file: Path | None = typer.Option(None, "--payload-file", metavar="F"),
    command: str | None = typer.Option(
        None, "--command", metavar="JSON", help='Also format {"command": ..., "params": {...}}.'
    ),
    examples_file: Path | None = typer.Option(
        None, "--examples", metavar="YAML", help="Run every example of a YAML file."
    ),
    device_id: str | None = typer.Option(
        None, "--device-id", metavar="ID", help="A registered device's contact (no identify())."
    ),
    device_type: str | None = typer.Option(
        None, "--type", metavar="T", help="metadata.device_type (default: FILE's name)."
    ),
    attr: list[str] = typer.Option(
        [],
        "--attr",
        metavar="KEY=VALUE",
        help="An attribute of the --device-id device (repeatable): metadata.attributes.",
    ),
    as_json: bool = JSON,
) -> None:
    """Run FILE in the sandbox, unsaved: parse a payload, format a command, or run examples."""
    from preservarium_tools.cli import parser_test_cmd

    options = parser_test_cmd.TrialOptions(
        device_type=device_type or parser_test_cmd.default_device_type(file),
        path=path,
        method=method,
        non=non,
        payload_hex=payload_hex,
        payload_file=payload_file,
        command_json=command,
        device_id=device_id,
        attributes=tuple(attr),
    )
    if examples_file is not None:
        if options.describes_a_run():
            fail("--examples runs the file's examples; it takes only --type and --json", code=2)
        _, examples = parser_test_cmd.read_examples(examples_file)
        source = read_source(file)
        address = settings().sandbox_addr
        parser_test_cmd.run_example_file(
            address, source, examples, options.device_type, as_json=as_json
        )
        return
    trial = parser_test_cmd.trial_from(options)
    source = read_source(file)
    parser_test_cmd.run_trial(settings().sandbox_addr, source, trial, as_json=as_json)


def _summary(record: ParserRecord) -> dict[str, object]:
    from preservarium.usecases.parsers import version_json

    return version_json(record)


@app.command("list")
def list_parsers(as_json: bool = JSON) -> None:
    """List device types with their active and latest versions."""
    config = settings()

    async def body() -> list[ParserSummary]:
        from preservarium.repositories import SQLParserRepository

        async with migrated_database(config) as engine:
            return await SQLParserRepository(engine).list_parsers()

    summaries = run(body)
    if as_json:
        print_json(summaries)
        return
    table = Table("type", "active", "latest", "updated")
    for item in summaries:
        active = "-" if item.active_version is None else str(item.active_version)
        table.add_row(item.device_type, active, str(item.latest_version), when(item.updated_at))
    console.print(table)


@app.command("show")
def show(
    device_type: str = typer.Argument(..., metavar="TYPE"),
    version: int | None = typer.Option(None, "--version", help="A version other than the active."),
    as_json: bool = JSON,
) -> None:
    """Show a parser version (the active one by default) with its source."""
    config = settings()

    async def body() -> tuple[ParserRecord, list[ParserRecord]]:
        from preservarium.repositories import SQLParserRepository

        async with migrated_database(config) as engine:
            repository = SQLParserRepository(engine)
            versions = await repository.list_versions(device_type)
            if version is None:
                return await repository.get_parser_for_sensor(device_type), versions
            return await repository.get_version(device_type, version), versions

    record, versions = run(body)
    if as_json:
        print_json({**_summary(record), "source": record.source, "examples": record.examples})
        return
    table = Table("version", "sha256", "size", "uploaded", "by", "")
    for item in versions:
        marker = "active" if item.active else ""
        table.add_row(
            str(item.version),
            item.sha256[:12],
            str(item.size),
            when(item.created_at),
            item.uploaded_by,
            marker,
        )
    console.print(table)
    console.print(f"\n{record.device_type} version {record.version}:")
    from rich.syntax import Syntax

    console.print(Syntax(record.source, "python", line_numbers=True))


@app.command("activate")
def activate(
    device_type: str = typer.Argument(..., metavar="TYPE"),
    version: int = typer.Argument(..., metavar="N"),
    as_json: bool = JSON,
) -> None:
    """Make version N of TYPE the active one (roll back or forward)."""
    config = settings()

    async def body() -> ParserRecord:
        from preservarium.repositories import SQLParserRepository

        async with migrated_database(config) as engine:
            return await SQLParserRepository(engine).activate(device_type, version)

    record = run(body)
    stored_in(config)
    if as_json:
        print_json(_summary(record))
        return
    console.print(f"{record.device_type} version {record.version} is active", highlight=False)


@app.command("diff")
def diff(
    device_type: str = typer.Argument(..., metavar="TYPE"),
    old: int = typer.Argument(..., metavar="A", help="The older version."),
    new: int = typer.Argument(..., metavar="B", help="The newer version."),
    as_json: bool = JSON,
) -> None:
    """Show how version B of TYPE differs from version A (a unified diff of the sources)."""
    config = settings()

    async def body() -> tuple[ParserRecord, ParserRecord]:
        from preservarium.repositories import SQLParserRepository

        async with migrated_database(config) as engine:
            repository = SQLParserRepository(engine)
            return (
                await repository.get_version(device_type, old),
                await repository.get_version(device_type, new),
            )

    first, second = run(body)
    text = unified_diff(first, second)
    if as_json:
        print_json({"device_type": device_type, "from": old, "to": new, "diff": text})
        return
    sys.stdout.write(text)


def unified_diff(first: ParserRecord, second: ParserRecord) -> str:
    """The unified diff that turns `first`'s source into `second`'s (the use case's)."""
    from preservarium.usecases import parsers

    return parsers.unified_diff(first, second)
