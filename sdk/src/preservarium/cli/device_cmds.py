"""`preservarium device ...`: the device registry."""

from __future__ import annotations

import typer
from rich.table import Table

from preservarium.cli.common import console, database, fail, print_json, run, settings, when
from preservarium.ids import is_device_id, is_device_type
from preservarium.repositories import DeviceRecord, SQLDeviceRepository

app = typer.Typer(help="Register and inspect devices.", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="Machine-readable output.")


@app.command("register")
def register(
    device_id: str = typer.Argument(..., metavar="ID"),
    device_type: str = typer.Option(..., "--type", help="Device type; names the parser."),
    as_json: bool = JSON,
) -> None:
    """Register a device reached on /d/ID."""
    if not is_device_id(device_id):
        fail(f"invalid device id {device_id!r}: use 1 to 64 characters of A-Z a-z 0-9 . _ : -")
    if not is_device_type(device_type):
        fail(f"invalid device type {device_type!r}: use 1 to 64 characters of A-Z a-z 0-9 . _ -")
    config = settings()

    async def body() -> DeviceRecord:
        async with database(config) as engine:
            return await SQLDeviceRepository(engine).register(device_id, device_type)

    record = run(body)
    if as_json:
        print_json(record)
    else:
        console.print(f"registered {record.id} (type {record.device_type})")


@app.command("list")
def list_devices(as_json: bool = JSON) -> None:
    """List registered devices."""
    config = settings()

    async def body() -> list[DeviceRecord]:
        async with database(config) as engine:
            return await SQLDeviceRepository(engine).list()

    records = run(body)
    if as_json:
        print_json(records)
        return
    table = Table("device id", "type", "registered")
    for record in records:
        table.add_row(record.id, record.device_type, when(record.created_at))
    console.print(table)


@app.command("show")
def show(device_id: str = typer.Argument(..., metavar="ID"), as_json: bool = JSON) -> None:
    """Show one device."""
    config = settings()

    async def body() -> DeviceRecord:
        async with database(config) as engine:
            return await SQLDeviceRepository(engine).get(device_id)

    record = run(body)
    if as_json:
        print_json(record)
    else:
        console.print(
            f"{record.id}  type {record.device_type}  registered {when(record.created_at)}"
        )


@app.command("remove")
def remove(device_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Forget a device."""
    config = settings()

    async def body() -> None:
        async with database(config) as engine:
            await SQLDeviceRepository(engine).remove(device_id)

    run(body)
    console.print(f"removed {device_id}")
