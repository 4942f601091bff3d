"""The stored commands, from the database: `preservarium command list`, and the
database half of `command cancel` (command_cmds publishes its status).

A cancelled command is marked `expired` with the reason "cancelled": it is never sent,
and `expired` is the contract's status for a command that ended unsent.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from preservarium.cli.common import console, fail, print_json, run, settings, when
from preservarium.cli.database import migrated_database

if TYPE_CHECKING:
    from preservarium.repositories import CommandRecord
    from preservarium.settings import Settings

CANCEL_REASON = "cancelled"
STATUSES = ("queued", "claimed", "sent", "failed", "expired", "rejected")


def command_json(record: CommandRecord) -> dict[str, Any]:
    """A stored command as `--json` prints it."""
    return {
        "request_id": record.request_id,
        "device_id": record.device_id,
        "command": record.name,
        "params": _params(record.body),
        "status": str(record.status),
        "reason": record.reason,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "sent_at": record.sent_at,
    }


def _params(body: str) -> Any:
    try:
        return json.loads(body).get("params")
    except (ValueError, AttributeError):
        return None


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


async def cancel_stored(config: Settings, request_id: str) -> tuple[CommandRecord, bool]:
    """Mark a queued command expired with the reason "cancelled": (the command, True).

    A command cancelled before comes back as it is, with False, so that its status can
    be published again. NotFoundError for an unknown request id; ConflictError for a
    command a gateway is sending right now, or that ended otherwise.
    """
    from preservarium.errors import ConflictError
    from preservarium.repositories import SQLCommandRepository
    from preservarium.repositories.commands import CommandStatus

    async with migrated_database(config) as engine:
        repository = SQLCommandRepository(engine)
        try:
            return await repository.cancel(request_id, reason=CANCEL_REASON), True
        except ConflictError:
            current = await repository.get(request_id)
            if (current.status, current.reason) == (CommandStatus.EXPIRED, CANCEL_REASON):
                return current, False
            raise
