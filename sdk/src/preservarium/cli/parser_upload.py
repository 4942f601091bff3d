"""What `parser upload` checks before it stores: a parse function, and no identical version."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import TYPE_CHECKING

from preservarium.cli.common import fail
from preservarium.errors import NotFoundError

if TYPE_CHECKING:
    from preservarium.repositories import ParserRecord, SQLParserRepository

REQUIRED_FUNCTION = "parse"


def defines(source: str, name: str) -> bool:
    """True when the module defines `name` at top level (a def, or an assignment)."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            return True
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(isinstance(target, ast.Name) and target.id == name for target in targets):
            return True
    return False


def require_parse_function(path: Path, source: str) -> None:
    """Refuse (exit 1, kind missing_function) a source with no parse(): every device
    contact would fail. Checked here too, so that it never depends on the sandbox."""
    if not defines(source, REQUIRED_FUNCTION):
        fail(f"{path}: missing_function: no {REQUIRED_FUNCTION}(payload, metadata) defined")


async def identical_version(
    repository: SQLParserRepository, device_type: str, source: str, examples: str | None
) -> ParserRecord | None:
    """The newest stored version of `device_type` with this source and these examples."""
    from preservarium.repositories.parsers import source_sha256

    digest = source_sha256(source)
    try:
        versions = await repository.list_versions(device_type)
    except NotFoundError:
        return None
    same = [v for v in versions if v.sha256 == digest and v.examples == examples]
    return max(same, key=lambda record: record.version) if same else None
