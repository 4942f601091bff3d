"""/api/v1/parsers: list, upload, show, diff, activate and test parser versions (the use
cases of `preservarium parser ...`, with the same checks)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from preservarium.contract.contact import Contact
from preservarium.examples import Example, command_input, load_examples, run_examples
from preservarium.ids import is_device_id, is_device_type
from preservarium.repositories import SQLParserRepository
from preservarium.sandbox_client import SandboxUnavailableError
from preservarium.usecases import parsers as usecase
from preservarium.usecases.errors import invalid
from preservarium.usecases.jsonable import json_object, jsonable
from pydantic import BaseModel, Field

from preservarium_gateway.api.auth import READ, WRITE
from preservarium_gateway.api.context import context_of
from preservarium_gateway.api.observe import note
from preservarium_gateway.api.params import OtherVersion, VersionNumber
from preservarium_gateway.api.problems import problem_response

router = APIRouter(prefix="/parsers", tags=["parsers"])


class NewVersion(BaseModel):
    """A parser version to upload (as `parser upload TYPE FILE --examples YAML`)."""

    source: str = Field(description="The parser's Python source.")
    examples: str | None = Field(None, description="Examples (YAML text); all must pass.")
    activate: bool = Field(True, description="Make it the active version.")
    force: bool = Field(False, description="Store unchecked when the sandbox is unreachable.")


class Trial(BaseModel):
    """Unsaved source to run in the sandbox: on a payload, a command, or its examples."""

    source: str
    device_type: str = "test"
    payload_hex: str | None = None
    path: str = ""
    method: Literal["GET", "POST", "PUT"] = "POST"
    confirmable: bool = True
    device_id: str | None = Field(None, description="A registered device's contact.")
    command: dict[str, Any] | None = Field(None, description='{"command": ..., "params": {}}')
    examples: str | None = Field(None, description="Run these examples (YAML) instead.")


async def _examples(text: str) -> list[Example]:
    """Examples read in a worker thread: YAML is read in pure Python, seconds for a large
    file, and the event loop serves the gateway's contacts too."""
    return await asyncio.to_thread(load_examples, text)


def _check_type(device_type: str) -> None:
    if not is_device_type(device_type):
        raise invalid("type", f"invalid device type {device_type!r}: use 1 to 64 characters "
                      "of A-Z a-z 0-9 . _ -")  # fmt: skip


@router.get("", dependencies=[READ], summary="List device types and their versions")
async def list_parsers(request: Request) -> list[dict[str, Any]]:
    """Each type with its active and latest version."""
    summaries = await SQLParserRepository(context_of(request).engine).list_parsers()
    return [jsonable(summary) for summary in summaries]


@router.get("/{device_type}/versions", dependencies=[READ], summary="List a type's versions")
async def list_versions(request: Request, device_type: str) -> list[dict[str, Any]]:
    """Every version of the type, without sources."""
    versions = await SQLParserRepository(context_of(request).engine).list_versions(device_type)
    return [jsonable(usecase.version_json(record)) for record in versions]


@router.post("/{device_type}/versions", status_code=201, dependencies=[WRITE],
             summary="Upload a new version (checked in the sandbox first)")  # fmt: skip
async def upload(request: Request, device_type: str, body: NewVersion) -> Any:
    """The same checks as `parser upload`: the source locally, then its examples (or a
    compile) in the sandbox. 422 when refused (failing examples in `examples`); the
    source and examples of a stored version make no new version (`created` false)."""
    context = context_of(request)
    _check_type(device_type)
    raw = body.source.encode("utf-8", "surrogatepass")
    source = usecase.check_source(raw)
    examples = await _examples(body.examples) if body.examples is not None else []
    try:
        await usecase.check_in_sandbox(context.sandbox, source, examples, device_type)
    except usecase.ExamplesFailedError as exc:
        outcomes = [usecase.example_json(result) for result in exc.results]
        return problem_response(422, "examples-failed", str(exc), examples=outcomes)
    except usecase.ScriptRefusedError as exc:
        return problem_response(422, "invalid-parser", str(exc), error_kind=exc.kind, line=exc.line)
    except SandboxUnavailableError:
        if not body.force:
            raise
        note(request.state, unchecked=True)
    caller = getattr(request.state, "caller", None)
    stored = await usecase.store_version(
        context.engine, device_type, source, body.examples, activate=body.activate,
        uploaded_by=f"api:{caller.name}" if caller is not None else "api",
    )  # fmt: skip
    note(request.state, version=stored.record.version, created=stored.created)
    answer = jsonable({**usecase.version_json(stored.record), "created": stored.created})
    return JSONResponse(answer, status_code=201 if stored.created else 200)


@router.get("/{device_type}/versions/{version}", dependencies=[READ],
            summary="Show a version (source, examples), or its diff against another")  # fmt: skip
async def show(
    request: Request,
    device_type: str,
    version: VersionNumber,
    against: OtherVersion = None,
) -> dict[str, Any]:
    """The version with its source and examples; with `?against=M`, `diff` is the unified
    diff that turns version M into this one."""
    repository = SQLParserRepository(context_of(request).engine)
    record = await repository.get_version(device_type, version)
    shown = {**usecase.version_json(record), "source": record.source, "examples": record.examples}
    if against is not None:
        other = await repository.get_version(device_type, against)
        shown.update({"against": against, "diff": usecase.unified_diff(other, record)})
    return json_object(shown)


@router.post("/{device_type}/versions/{version}/activate", dependencies=[WRITE],
             summary="Make a version the active one (roll back or forward)")  # fmt: skip
async def activate(request: Request, device_type: str, version: VersionNumber) -> dict[str, Any]:
    """The version, now active."""
    record = await SQLParserRepository(context_of(request).engine).activate(device_type, version)
    return json_object(usecase.version_json(record))


@router.post("/test", dependencies=[WRITE], summary="Run unsaved source in the sandbox")
async def test(request: Request, body: Trial) -> Any:
    """`parser test --json`: the outcome of parsing a payload (and/or formatting a
    command); with `examples`, each example's outcome. A script error is a 200 with
    `ok: false` (it is the answer asked for); bad input is a 422."""
    context = context_of(request)
    _check_type(body.device_type)
    source = usecase.check_source(body.source.encode("utf-8", "surrogatepass"))
    if body.examples is not None:
        examples = await _examples(body.examples)
        results = await run_examples(context.sandbox, source, examples, body.device_type)
        return {"ok": all(r.ok for r in results),
                "examples": [usecase.example_json(r) for r in results]}  # fmt: skip
    contact, command = _trial(body)
    trial = await context.sandbox.test_parser(
        source, contact=contact, identify=body.device_id is None, command=command
    )
    return usecase.trial_report(trial)


def _trial(body: Trial) -> tuple[Contact | None, Any]:
    if body.device_id is not None and not is_device_id(body.device_id):
        raise invalid("device_id", f"invalid device id {body.device_id!r}")
    try:
        payload = None if body.payload_hex is None else bytes.fromhex(body.payload_hex)
    except ValueError:
        raise invalid("payload_hex", "payload_hex is not hex") from None
    command = None
    if body.command is not None:
        command = command_input(body.command, device_id=body.device_id)
    contact = None
    if payload is not None or command is None:
        contact = Contact(
            payload=payload or b"", device_type=body.device_type, device_id=body.device_id,
            path=body.path, method=body.method, confirmable=body.confirmable,
            received_at=datetime.now(UTC),
        )  # fmt: skip
    return contact, command
