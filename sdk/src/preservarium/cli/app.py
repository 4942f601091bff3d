"""The `preservarium` command: one Typer app, one sub-app per noun.

Only the noun asked for is imported: `preservarium probe` (healthchecks, every few
seconds) and `preservarium parser test` never load SQLAlchemy, Alembic or aiokafka. The
whole app is built for `preservarium --help` and anything that is not a known noun.
"""

from __future__ import annotations

import importlib
import sys

import typer

HELP = "Preservarium CoAP connector: parsers, devices, commands and the embedded stack."

# noun -> (module in preservarium.cli, attribute, is a sub-app rather than one command)
NOUNS: dict[str, tuple[str, str, bool]] = {
    "db": ("db_cmds", "app", True),
    "parser": ("parser_cmds", "app", True),
    "device": ("device_cmds", "app", True),
    "command": ("command_cmds", "app", True),
    "tail": ("tail_cmd", "tail", False),
    "probe": ("probe_cmds", "app", True),
    "up": ("up_cmd", "up", False),
    "simulate": ("simulate_cmd", "app", True),
}


def _add(app: typer.Typer, noun: str) -> None:
    module_name, attribute, is_group = NOUNS[noun]
    target = getattr(importlib.import_module(f"preservarium.cli.{module_name}"), attribute)
    if is_group:
        app.add_typer(target, name=noun)
    else:
        app.command(noun)(target)


def _group() -> None:
    pass


def build_app(nouns: tuple[str, ...] = tuple(NOUNS)) -> typer.Typer:
    """The command with `nouns` (all of them by default)."""
    app = typer.Typer(
        help=HELP, no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False
    )
    # A callback keeps the app a group: with `tail` or `up` alone, Typer would otherwise
    # run that one command directly and read its own name as its first argument.
    app.callback()(_group)
    for noun in nouns:
        _add(app, noun)
    return app


def main() -> None:
    """Console-script entry point."""
    noun = sys.argv[1] if len(sys.argv) > 1 else ""
    app = build_app((noun,)) if noun in NOUNS else build_app()
    app()
