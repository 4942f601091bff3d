"""The `preservarium` command: one Typer app, one sub-app per noun.

The sub-apps are imported when the command runs, not when this module is imported, and
`preservarium probe ...` imports only the probes: container healthchecks run it every few
seconds, and the full CLI pulls in SQLAlchemy, Alembic and aiokafka (about a second of
CPU) that a probe never uses.
"""

from __future__ import annotations

import sys

import typer

HELP = "Preservarium CoAP connector: parsers, devices, commands and the embedded stack."


def _typer() -> typer.Typer:
    return typer.Typer(
        help=HELP, no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False
    )


def probe_app() -> typer.Typer:
    """The command with nothing but `probe`."""
    from preservarium.cli import probe_cmds

    app = _typer()
    app.add_typer(probe_cmds.app, name="probe")
    return app


def build_app() -> typer.Typer:
    """The whole command."""
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

    app = _typer()
    app.add_typer(db_cmds.app, name="db")
    app.add_typer(parser_cmds.app, name="parser")
    app.add_typer(device_cmds.app, name="device")
    app.add_typer(command_cmds.app, name="command")
    app.command("tail")(tail_cmd.tail)
    app.add_typer(probe_cmds.app, name="probe")
    app.command("up")(up_cmd.up)
    app.add_typer(simulate_cmd.app, name="simulate")
    return app


def main() -> None:
    """Console-script entry point."""
    app = probe_app() if sys.argv[1:2] == ["probe"] else build_app()
    app()
