"""Parser use cases: check and store a version (`parser upload`, POST
/parsers/{type}/versions, the shipped parsers of `preservarium up`), run unsaved source
(`parser test`, POST /parsers/test), and the JSON shapes both show."""

from __future__ import annotations

import ast
import asyncio
import difflib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from preservarium.errors import InvalidParserSourceError, NotFoundError, PreservariumError
from preservarium.examples import Example, ExampleResult, load_examples, run_examples
from preservarium.sandbox_answers import ScriptError, TrialAnswer

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from preservarium.repositories import ParserRecord, SQLParserRepository
    from preservarium.sandbox_client import SandboxClient

REQUIRED_FUNCTION = "parse"


class ExamplesFailedError(PreservariumError):
    """Some examples did not pass in the sandbox: the version is not stored."""

    def __init__(self, results: Sequence[ExampleResult]) -> None:
        failed = [result for result in results if not result.ok]
        super().__init__(f"{len(failed)} of {len(results)} examples failed; version not stored")
        self.results = list(results)


class ScriptRefusedError(PreservariumError):
    """The sandbox refused to compile the source; `kind` and `line` say where and why."""

    def __init__(self, kind: str, message: str, line: int | None) -> None:
        super().__init__(f"{kind}: {message}; version not stored")
        self.kind = kind
        self.line = line


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """The outcome of an upload: the version, and whether it is new."""

    record: ParserRecord
    created: bool


def defines(source: str, name: str) -> bool:
    """True when the module defines `name` at top level (a def, or an assignment)."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            return True
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(isinstance(target, ast.Name) and target.id == name for target in targets):
            return True
    return False


def check_source(raw: bytes) -> str:
    """The local checks of an upload (size, UTF-8, syntax, imports, a parse function);
    InvalidParserSourceError naming the problem. Returns the source."""
    from preservarium.parser_source import validate_source

    source = validate_source(raw)
    if not defines(source, REQUIRED_FUNCTION):
        raise InvalidParserSourceError(
            f"missing_function: no {REQUIRED_FUNCTION}(payload, metadata) defined"
        )
    return source


async def check_in_sandbox(
    sandbox: SandboxClient, source: str, examples: Sequence[Example], device_type: str
) -> list[ExampleResult]:
    """Run the examples (ExamplesFailedError unless all pass) or, without examples,
    compile the source (ScriptRefusedError). SandboxUnavailableError when it cannot."""
    if examples:
        results = await run_examples(sandbox, source, examples, device_type)
        if not all(result.ok for result in results):
            raise ExamplesFailedError(results)
        return results
    error = (await sandbox.test_parser(source)).answer.error
    if error is not None:
        raise ScriptRefusedError(error.kind, error.message, error.line)
    return []


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


async def store_version(
    engine: AsyncEngine,
    device_type: str,
    source: str,
    examples: str | None,
    *,
    activate: bool,
    uploaded_by: str,
    keep_unchanged: bool = False,
) -> StoredVersion:
    """Store a checked source as a new version (activated unless told not to). The source
    and examples of a stored version make no new version: that one is returned (and
    activated, unless told not to or `keep_unchanged`, which leaves it as it is)."""
    from preservarium.repositories import SQLParserRepository

    repository = SQLParserRepository(engine)
    same = await identical_version(repository, device_type, source, examples)
    if same is not None:
        if activate and not keep_unchanged and not same.active:
            same = await repository.activate(device_type, same.version)
        return StoredVersion(same, created=False)
    stored = await repository.upload(
        device_type, source, uploaded_by=uploaded_by, examples=examples, activate=activate
    )
    return StoredVersion(stored, created=True)


async def publish_version(
    engine: AsyncEngine,
    sandbox: SandboxClient,
    device_type: str,
    raw: bytes,
    examples: str | None,
    *,
    uploaded_by: str,
    activate: bool = True,
    keep_unchanged: bool = False,
) -> StoredVersion:
    """Publish a parser in one step: the local checks, then its examples (or, without any,
    a compile) in the sandbox, then store it (see `store_version`). Nothing is stored when
    it is refused: InvalidParserSourceError, ExamplesError (a malformed examples file),
    ExamplesFailedError, ScriptRefusedError, or SandboxUnavailableError when it cannot be
    checked."""
    source = check_source(raw)
    # A large examples file would hold the event loop for as long as YAML takes to read it.
    cases = await asyncio.to_thread(load_examples, examples) if examples is not None else []
    await check_in_sandbox(sandbox, source, cases, device_type)
    return await store_version(
        engine, device_type, source, examples,
        activate=activate, uploaded_by=uploaded_by, keep_unchanged=keep_unchanged,
    )  # fmt: skip


def version_json(record: ParserRecord) -> dict[str, Any]:
    """A parser version as `parser ... --json` and the API show it (without its source)."""
    return {
        "device_type": record.device_type,
        "version": record.version,
        "sha256": record.sha256,
        "size": record.size,
        "created_at": record.created_at,
        "uploaded_by": record.uploaded_by,
        "active": record.active,
    }


def unified_diff(first: ParserRecord, second: ParserRecord) -> str:
    """The unified diff that turns `first`'s source into `second`'s."""
    lines = difflib.unified_diff(
        first.source.splitlines(keepends=True),
        second.source.splitlines(keepends=True),
        fromfile=f"{first.device_type} v{first.version}",
        tofile=f"{second.device_type} v{second.version}",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def trial_report(trial: TrialAnswer) -> dict[str, Any]:
    """The `parser test --json` shape of a TestParser answer (a failing command fails
    the run), with `printed` added when the parser print()ed something."""
    printed = trial.answer.printed
    return _report(trial) | ({"printed": printed} if printed else {})


def _report(trial: TrialAnswer) -> dict[str, Any]:
    answer, command = trial.answer, trial.answer.command
    if answer.error is not None:
        return script_failure(answer.error)
    if command is not None and command.error is not None:
        return script_failure(command.error, prefix="format_command: ")
    return {
        "ok": True,
        "device_id": answer.device_id,
        "data": json.loads(answer.data_json) if answer.data_json else None,
        "reply_hex": None if answer.reply is None else answer.reply.hex(),
        "command_hex": None if command is None else (command.payload or b"").hex(),
        "warnings": list(answer.warnings),
        "duration_ms": round(trial.duration_ms, 3),
    }


def script_failure(error: ScriptError, prefix: str = "") -> dict[str, Any]:
    """`{"ok": false, "error": {kind, message, line}}`."""
    return {
        "ok": False,
        "error": {"kind": error.kind, "message": prefix + error.message, "line": error.line},
    }


def example_json(result: ExampleResult) -> dict[str, Any]:
    """One example's outcome as `parser test --examples --json` shows it."""
    return {"index": result.index, "description": result.description, "ok": result.ok,
            "mismatch": result.mismatch}  # fmt: skip
