"""The `preservarium` command: one Typer app, one sub-app per noun.

Only the noun asked for is imported: `preservarium probe` (healthchecks, every few
seconds) and `preservarium parser test` never load SQLAlchemy, Alembic or aiokafka.
`preservarium --help` (and anything that is not a known noun) imports no noun at all:
it lists them from NOUNS. Shell completion gets the whole app, every noun imported.
"""

from __future__ import annotations

import importlib
import os
import sys

import preservarium
import typer

HELP = (
    "Preservarium CoAP connector: parsers, devices, commands and the embedded stack.\n\n"
    "The database is PRESERVARIUM_DATABASE_URL, by default SQLite in PRESERVARIUM_DATA_DIR "
    "($XDG_DATA_HOME/preservarium, else ~/.local/share/preservarium), whatever the current "
    "directory. `preservarium up` and `preservarium db upgrade` create and migrate it; the "
    "other commands never do. Every PRESERVARIUM_* setting is checked before a command runs."
)

# noun -> (module in preservarium_tools.cli, attribute, is a sub-app rather than one command,
# its one-line help: the same as the module's own, which a test checks)
NOUNS: dict[str, tuple[str, str, bool, str]] = {
    "db": ("db_cmds", "app", True, "Database schema."),
    "parser": (
        "parser_cmds",
        "app",
        True,
        "Upload, inspect, activate and test parser scripts.",
    ),
    "device": ("device_cmds", "app", True, "Register and inspect devices."),
    "command": ("command_cmds", "app", True, "Send, list and cancel commands to devices."),
    "token": ("token_cmds", "app", True, "Create, list and revoke API tokens."),
    "tail": (
        "tail_cmd",
        "tail",
        False,
        "Follow a topic and print its records until Ctrl-C (or --count N).",
    ),
    "probe": (
        "probe_cmds",
        "app",
        True,
        "Health probes of the services: exit 0 healthy, 1 not.",
    ),
    "replay": (
        "replay_cmd",
        "app",
        True,
        "Replay raw uplinks through a parser version; list and show replays.",
    ),
    "up": ("up_cmd", "up", False, "Run the embedded stack in the foreground."),
    "simulate": ("simulate_cmd", "app", True, "Simulate devices against a running gateway."),
}
COMPLETION_VARIABLE = "_PRESERVARIUM_COMPLETE"


def _add(app: typer.Typer, noun: str) -> None:
    module_name, attribute, is_group, _ = NOUNS[noun]
    target = getattr(importlib.import_module(f"preservarium_tools.cli.{module_name}"), attribute)
    if is_group:
        app.add_typer(target, name=noun)
    else:
        app.command(noun)(target)


def _add_listing(app: typer.Typer, noun: str) -> None:
    """The noun as `--help` lists it, without importing it."""
    _, _, is_group, summary = NOUNS[noun]
    if is_group:
        app.add_typer(typer.Typer(), name=noun, help=summary)
    else:
        app.command(noun, help=summary)(_group)


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


def build_app(nouns: tuple[str, ...] = tuple(NOUNS), *, listing: bool = False) -> typer.Typer:
    """The command with `nouns` (all of them by default); with `listing`, the nouns are
    only named, for the top-level help."""
    app = typer.Typer(help=HELP, no_args_is_help=True, pretty_exceptions_enable=False)
    # A callback keeps the app a group: with `tail` or `up` alone, Typer would otherwise
    # run that one command directly and read its own name as its first argument.
    app.callback()(_group)
    for noun in nouns:
        (_add_listing if listing else _add)(app, noun)
    return app


def check_settings(argv: list[str]) -> None:
    """Every setting is checked before any command runs: a bad one is one line naming
    the variable, exit 2 (also for commands that would not have used it)."""
    if len(argv) < 2 or NO_RUN.intersection(argv[1:]):
        return
    from preservarium_tools.cli.common import settings

    settings()


def main(args: list[str] | None = None) -> None:
    """Console-script entry point: `preservarium ARGS...`, the command line by default
    (the test suite passes `args` to run a command in its own process)."""
    argv = sys.argv if args is None else ["preservarium", *args]
    noun = argv[1] if len(argv) > 1 else ""
    check_settings(argv)
    if noun in NOUNS:
        app = build_app((noun,))
    else:
        app = build_app(listing=COMPLETION_VARIABLE not in os.environ)
    if args is None:
        app()
    else:
        app(args=args, prog_name="preservarium")
