"""The `preservarium` command: one Typer app, one sub-app per noun."""

from __future__ import annotations

import typer

from preservarium.cli import db_cmds, device_cmds, parser_cmds

app = typer.Typer(
    help="Preservarium CoAP connector: parsers, devices, commands and the embedded stack.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db_cmds.app, name="db")
app.add_typer(parser_cmds.app, name="parser")
app.add_typer(device_cmds.app, name="device")


def main() -> None:
    """Console-script entry point."""
    app()
