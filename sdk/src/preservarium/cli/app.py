"""The `preservarium` command: one Typer app, one sub-app per noun."""

from __future__ import annotations

import typer

from preservarium.cli import (
    command_cmds,
    db_cmds,
    device_cmds,
    parser_cmds,
    probe_cmds,
    simulate_cmd,
    tail_cmd,
    up_cmd,
)

app = typer.Typer(
    help="Preservarium CoAP connector: parsers, devices, commands and the embedded stack.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db_cmds.app, name="db")
app.add_typer(parser_cmds.app, name="parser")
app.add_typer(device_cmds.app, name="device")
app.add_typer(command_cmds.app, name="command")
app.command("tail")(tail_cmd.tail)
app.add_typer(probe_cmds.app, name="probe")
app.command("up")(up_cmd.up)
app.add_typer(simulate_cmd.app, name="simulate")


def main() -> None:
    """Console-script entry point."""
    app()
