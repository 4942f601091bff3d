"""The README's list of `preservarium` commands is the CLI's: every noun, and every
command of each noun, exactly."""

from __future__ import annotations

import enum
import re
import typing
from collections.abc import Callable
from typing import Any

import typer
from preservarium_tools.cli.app import NOUNS, build_app
from typer.core import TyperGroup

from tests.repo.markdown import ROOT, section

# `noun` or `noun a|b|c` in backticks.
SPAN = re.compile(r"`([a-z]+)((?: [a-z]+(?:\|[a-z]+)*)?)`")


def cli_commands() -> dict[str, set[str]]:
    """noun -> its commands, or the choices of its argument for a noun that is one command."""
    group = typer.main.get_command(build_app())
    assert isinstance(group, TyperGroup)
    found = {}
    for noun, command in group.commands.items():
        if isinstance(command, TyperGroup):
            found[noun] = set(command.commands)
        else:  # one command: the README names the choices of its argument (`tail raw|...`)
            found[noun] = choices_of(command.callback)
    return found


def choices_of(function: Callable[..., Any] | None) -> set[str]:
    """The values of the Enum-typed parameters of a command's function."""
    hints = typing.get_type_hints(function) if function is not None else {}
    return {
        str(member.value)
        for hint in hints.values()
        if isinstance(hint, type) and issubclass(hint, enum.Enum)
        for member in hint
    }


def readme_commands() -> dict[str, set[str]]:
    """noun -> commands, from the README paragraph that lists the CLI."""
    text = section(ROOT / "README.md", "Commands")
    paragraph = text[text.index("The `preservarium` CLI:") :].split("\n\n")[0]
    listed: dict[str, set[str]] = {}
    for noun, rest in SPAN.findall(paragraph):
        if noun in NOUNS:
            listed.setdefault(noun, set()).update(rest.strip().split("|") if rest else ())
    return listed


def test_the_cli_is_read() -> None:
    assert {"parser", "device", "command", "up"} <= cli_commands().keys()


def test_the_readme_lists_every_command() -> None:
    assert readme_commands() == cli_commands()
