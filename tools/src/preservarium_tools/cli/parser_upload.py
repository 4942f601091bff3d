"""What `parser upload` checks before it stores: a parse function (the use case's check)."""

from __future__ import annotations

from pathlib import Path

from preservarium.usecases.parsers import REQUIRED_FUNCTION, defines

from preservarium_tools.cli.common import fail


def require_parse_function(path: Path, source: str) -> None:
    """Refuse (exit 1, kind missing_function) a source with no parse(): every device
    contact would fail. Checked here too, so that it never depends on the sandbox."""
    if not defines(source, REQUIRED_FUNCTION):
        fail(f"{path}: missing_function: no {REQUIRED_FUNCTION}(payload, metadata) defined")
