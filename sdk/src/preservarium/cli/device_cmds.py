"""`preservarium device ...`: the device registry."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from preservarium.cli.common import (
    console,
    fail,
    print_json,
    run,
    settings,
    stored_in,
    when,
)
from preservarium.cli.database import migrated_database
from preservarium.cli.device_credentials import (
    AUTH_HELP,
    AuthChoice,
    auth_kind,
    auth_option,
    check_auth,
    credential_repository,
    credentials,
    parse_attributes,
    show_document,
    summary_json,
    summary_line,
)
from preservarium.errors import NotFoundError
from preservarium.ids import is_device_id, is_device_type

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from preservarium.identity.documents import CredentialDocument
    from preservarium.repositories import CommandRecord, CredentialSummary, DeviceRecord

app = typer.Typer(help="Register and inspect devices.", no_args_is_help=True)
app.command("credentials")(credentials)
JSON = typer.Option(False, "--json", help="Machine-readable output.")
FORCE_TYPE = typer.Option(
    False, "--force", help="Accept a type that has no active parser yet (upload one before use)."
)
PENDING_LIMIT = 100


def _check_id(device_id: str) -> None:
    if not is_device_id(device_id):
        fail(f"invalid device id {device_id!r}: use 1 to 64 characters of A-Z a-z 0-9 . _ : -")


def _check_type(device_type: str) -> None:
    if not is_device_type(device_type):
        fail(f"invalid device type {device_type!r}: use 1 to 64 characters of A-Z a-z 0-9 . _ -")


async def require_parser(engine: AsyncEngine, device_type: str) -> None:
    """NotFoundError, saying what to do, when `device_type` has no active parser: the
    gateway would answer its device 4.04 and parse nothing."""
    from preservarium.repositories import SQLParserRepository

    try:
        await SQLParserRepository(engine).get_parser_for_sensor(device_type)
    except NotFoundError:
        raise NotFoundError(
            f"device type {device_type!r} has no active parser: upload one first "
            f"(preservarium parser upload {device_type} FILE), or pass --force"
        ) from None


def _device_json(record: DeviceRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "device_type": record.device_type,
        "created_at": record.created_at,
        "attributes": record.attributes,
    }


@app.command("register")
def register(
    device_id: str = typer.Argument(..., metavar="ID"),
    device_type: str = typer.Option(..., "--type", help="Device type; names the parser."),
    auth_value: AuthChoice = auth_option(AuthChoice.NONE, AUTH_HELP),
    attr: list[str] = typer.Option([], "--attr", help="An attribute KEY=VALUE (repeatable)."),
    force: bool = FORCE_TYPE,
    as_json: bool = JSON,
) -> None:
    """Register a device reached on /d/ID, with generated credentials (printed once). Its
    type must have an active parser, unless --force. (Devices reached on a route need no
    registration: the route gives the type; register them to give them credentials.)"""
    _check_id(device_id)
    _check_type(device_type)
    attributes = parse_attributes(attr)
    config = settings()
    auth = auth_kind(auth_value)
    check_auth(device_id, auth, config)

    async def body() -> tuple[DeviceRecord, CredentialDocument]:
        from preservarium.repositories import SQLDeviceRepository

        async with migrated_database(config) as engine:
            if not force:
                await require_parser(engine, device_type)
            devices = SQLDeviceRepository(engine)
            record = await devices.register(device_id, device_type, attributes=attributes)
            try:
                document = await credential_repository(engine, config).set_credentials(
                    device_id, auth
                )
            except Exception:
                await devices.remove(device_id)  # all or nothing: no device without its kind
                raise
            return record, document

    record, document = run(body)
    stored_in(config)
    if not as_json:
        console.print(
            f"registered {record.id} (type {record.device_type}, auth {auth.value})",
            highlight=False,
        )
    show_document(document, as_json=as_json, extra=_device_json(record))


@app.command("update")
def update(
    device_id: str = typer.Argument(..., metavar="ID"),
    device_type: str | None = typer.Option(None, "--type", help="The device's new type."),
    attr: list[str] = typer.Option([], "--attr", help="Set an attribute KEY=VALUE (repeatable)."),
    unset_attr: list[str] = typer.Option(
        [], "--unset-attr", metavar="KEY", help="Remove an attribute (repeatable)."
    ),
    clear_attrs: bool = typer.Option(
        False, "--clear-attrs", help="Remove every attribute first (then apply --attr)."
    ),
    force: bool = FORCE_TYPE,
    as_json: bool = JSON,
) -> None:
    """Change a registered device's type or attributes (its next contact uses the new type's
    parser; parsers see new attributes within seconds)."""
    _check_id(device_id)
    if device_type is not None:
        _check_type(device_type)
    attributes = parse_attributes(attr)
    changes_attributes = bool(attributes or unset_attr or clear_attrs)
    if device_type is None and not changes_attributes:
        fail("nothing to change: give --type, --attr, --unset-attr or --clear-attrs")
    config = settings()

    async def body() -> DeviceRecord:
        from preservarium.repositories import SQLDeviceRepository

        async with migrated_database(config) as engine:
            devices = SQLDeviceRepository(engine)
            if device_type is not None and not force:
                await require_parser(engine, device_type)
            if changes_attributes:  # checked first: a refused change leaves the type alone
                record = await devices.update_attributes(
                    device_id, set_=attributes, unset=tuple(unset_attr), replace=clear_attrs
                )
            if device_type is not None:
                record = await devices.change_type(device_id, device_type)
            return record

    record = run(body)
    stored_in(config)
    if as_json:
        print_json(_device_json(record))
    elif device_type is not None:
        console.print(f"{record.id} now has type {record.device_type}", highlight=False)
    if not as_json and changes_attributes:
        console.print(f"{record.id} now has {len(record.attributes)} attribute(s)", highlight=False)


@app.command("list")
def list_devices(as_json: bool = JSON) -> None:
    """List registered devices."""
    config = settings()

    async def body() -> list[DeviceRecord]:
        from preservarium.repositories import SQLDeviceRepository

        async with migrated_database(config) as engine:
            return await SQLDeviceRepository(engine).list()

    records = run(body)
    if as_json:
        print_json([_device_json(record) for record in records])
        return
    table = Table("device id", "type", "registered")
    for record in records:
        table.add_row(record.id, record.device_type, when(record.created_at))
    console.print(table)


@app.command("show")
def show(device_id: str = typer.Argument(..., metavar="ID"), as_json: bool = JSON) -> None:
    """Show one device, how it authenticates (never the secret) and its waiting commands."""
    config = settings()

    async def body() -> tuple[DeviceRecord, CredentialSummary, list[CommandRecord]]:
        from preservarium.repositories import SQLCommandRepository, SQLDeviceRepository
        from preservarium.repositories.commands import CommandStatus

        async with migrated_database(config) as engine:
            record = await SQLDeviceRepository(engine).get(device_id)
            summary = await credential_repository(engine, config).summary(device_id)
            pending = await SQLCommandRepository(engine).list_commands(
                device_id=device_id,
                statuses=(CommandStatus.QUEUED, CommandStatus.CLAIMED),
                limit=PENDING_LIMIT,
            )
            return record, summary, pending

    record, summary, pending = run(body)
    if as_json:
        from preservarium.cli.command_list import command_json

        print_json({**_device_json(record), **summary_json(summary),
                    "pending_commands": [command_json(c) for c in pending]})  # fmt: skip
        return
    console.print(
        f"{record.id}  type {record.device_type}  registered {when(record.created_at)}  "
        f"{summary_line(summary)}",
        highlight=False,
    )
    if record.attributes:
        pairs = "  ".join(f"{key}={value}" for key, value in sorted(record.attributes.items()))
        console.print(f"attributes  {pairs}", highlight=False, markup=False)
    if not pending:
        console.print("no pending commands", highlight=False)
        return
    from preservarium.cli.command_list import command_table

    console.print(f"{len(pending)} pending (oldest sent first):", highlight=False)
    console.print(command_table(list(reversed(pending))))


@app.command("remove")
def remove(device_id: str = typer.Argument(..., metavar="ID"), as_json: bool = JSON) -> None:
    """Forget a device."""
    config = settings()

    async def body() -> None:
        from preservarium.repositories import SQLDeviceRepository

        async with migrated_database(config) as engine:
            await SQLDeviceRepository(engine).remove(device_id)

    run(body)
    stored_in(config)
    if as_json:
        print_json({"id": device_id, "removed": True})
    else:
        console.print(f"removed {device_id}", highlight=False)
