"""The stored commands, from the database: `preservarium command list`.

The JSON shape and the cancel itself are use cases (preservarium.usecases.commands),
shared with the HTTP API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from preservarium.usecases import commands as usecase
from rich.table import Table

from preservarium_tools.cli.common import console, fail, print_json, run, settings, when
from preservarium_tools.cli.database import migrated_database

if TYPE_CHECKING:
    from preservarium.repositories import CommandRecord

STATUSES = usecase.STATUSES
command_json = usecase.command_json


def command_table(records: list[CommandRecord]) -> Table:
    """Stored commands as a table for humans."""
    table = Table("request id", "device", "command", "status", "queued", "expires")
    for record in records:
        status = str(record.status) + (f" ({record.reason})" if record.reason else "")
        table.add_row(
            record.request_id,
            record.device_id,
            record.name,
            status,
            when(record.created_at),
            when(record.expires_at),
        )
    return table


def list_commands(
    device: str | None = typer.Option(None, "--device", metavar="ID", help="Only this device."),
    status: str | None = typer.Option(
        None, "--status", metavar="STATUS", help=f"Only this status: {', '.join(STATUSES)}."
    ),
    limit: int = typer.Option(100, "--limit", min=1, max=10_000, help="At most this many."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List the stored commands, newest first (what the gateways queued, sent or ended)."""
    if status is not None and status not in STATUSES:
        fail(f"invalid --status {status!r}: use one of {', '.join(STATUSES)}", code=2)
    config = settings()

    async def body() -> list[CommandRecord]:
        from preservarium.repositories import SQLCommandRepository
        from preservarium.repositories.commands import CommandStatus

        statuses = () if status is None else (CommandStatus(status),)
        async with migrated_database(config) as engine:
            return await SQLCommandRepository(engine).list_commands(
                device_id=device, statuses=statuses, limit=limit
            )

    records = run(body)
    if as_json:
        print_json([command_json(record) for record in records])
    else:
        console.print(command_table(records))
