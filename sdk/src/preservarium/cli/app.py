"""The `preservarium` command: one Typer app, one sub-app per noun.

Only the noun asked for is imported: `preservarium probe` (healthchecks, every few
seconds) and `preservarium parser test` never load SQLAlchemy, Alembic or aiokafka. The
whole app is built for `preservarium --help` and anything that is not a known noun.
"""

from __future__ import annotations

import importlib
import sys

import typer

import preservarium

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


# Arguments after which no command runs (so no setting needs to be valid).
NO_RUN = {"--help", "-h", "--version", "--install-completion", "--show-completion"}


def _show_version(value: bool) -> None:
    if value:
        print(f"preservarium {preservarium.__version__}")
        raise typer.Exit()


def _group(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_show_version,
        is_eager=True,
        help="Show the version and exit.",
    ),
) -> None:
    pass


def build_app(nouns: tuple[str, ...] = tuple(NOUNS)) -> typer.Typer:
    """The command with `nouns` (all of them by default)."""
    app = typer.Typer(help=HELP, no_args_is_help=True, pretty_exceptions_enable=False)
    # A callback keeps the app a group: with `tail` or `up` alone, Typer would otherwise
    # run that one command directly and read its own name as its first argument.
    app.callback()(_group)
    for noun in nouns:
        _add(app, noun)
    return app


def check_settings(argv: list[str]) -> None:
    """Every setting is checked before any command runs: a bad one is one line naming
    the variable, exit 2 (also for commands that would not have used it)."""
    if len(argv) < 2 or NO_RUN.intersection(argv[1:]):
        return
    from preservarium.cli.common import settings

    settings()


def main() -> None:
    """Console-script entry point."""
    noun = sys.argv[1] if len(sys.argv) > 1 else ""
    check_settings(sys.argv)
    app = build_app((noun,)) if noun in NOUNS else build_app()
    app()
