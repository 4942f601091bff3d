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
from preservarium.errors import NotFoundError
from preservarium.ids import is_device_id, is_device_type

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from preservarium.repositories import CommandRecord, DeviceRecord

app = typer.Typer(help="Register and inspect devices.", no_args_is_help=True)
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
    return {"id": record.id, "device_type": record.device_type, "created_at": record.created_at}


@app.command("register")
def register(
    device_id: str = typer.Argument(..., metavar="ID"),
    device_type: str = typer.Option(..., "--type", help="Device type; names the parser."),
    force: bool = FORCE_TYPE,
    as_json: bool = JSON,
) -> None:
    """Register a device reached on /d/ID. Its type must have an active parser, unless
    --force. (Devices reached on a route need no registration: the route gives the type.)"""
    _check_id(device_id)
    _check_type(device_type)
    config = settings()

    async def body() -> DeviceRecord:
        from preservarium.repositories import SQLDeviceRepository

        async with migrated_database(config) as engine:
            if not force:
                await require_parser(engine, device_type)
            return await SQLDeviceRepository(engine).register(device_id, device_type)

    record = run(body)
    stored_in(config)
    if as_json:
        print_json(_device_json(record))
    else:
        console.print(f"registered {record.id} (type {record.device_type})", highlight=False)


@app.command("update")
def update(
    device_id: str = typer.Argument(..., metavar="ID"),
    device_type: str = typer.Option(..., "--type", help="The device's new type."),
    force: bool = FORCE_TYPE,
    as_json: bool = JSON,
) -> None:
    """Change a registered device's type (its next contact uses the new type's parser)."""
    _check_id(device_id)
    _check_type(device_type)
    config = settings()

    async def body() -> DeviceRecord:
        from preservarium.repositories import SQLDeviceRepository

        async with migrated_database(config) as engine:
            if not force:
                await require_parser(engine, device_type)
            return await SQLDeviceRepository(engine).change_type(device_id, device_type)

    record = run(body)
    stored_in(config)
    if as_json:
        print_json(_device_json(record))
    else:
        console.print(f"{record.id} now has type {record.device_type}", highlight=False)


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
    """Show one device and the commands waiting for its next contact."""
    config = settings()

    async def body() -> tuple[DeviceRecord, list[CommandRecord]]:
        from preservarium.repositories import SQLCommandRepository, SQLDeviceRepository
        from preservarium.repositories.commands import CommandStatus

        async with migrated_database(config) as engine:
            record = await SQLDeviceRepository(engine).get(device_id)
            pending = await SQLCommandRepository(engine).list_commands(
                device_id=device_id,
                statuses=(CommandStatus.QUEUED, CommandStatus.CLAIMED),
                limit=PENDING_LIMIT,
            )
            return record, pending

    record, pending = run(body)
    if as_json:
        from preservarium.cli.command_list import command_json

        print_json({**_device_json(record), "pending_commands": [command_json(c) for c in pending]})
        return
    console.print(
        f"{record.id}  type {record.device_type}  registered {when(record.created_at)}",
        highlight=False,
    )
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
