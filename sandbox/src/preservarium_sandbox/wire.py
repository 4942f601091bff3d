"""Translation between the gRPC messages and the engine's jobs and outcomes."""

from __future__ import annotations

import json
from typing import Any

from preservarium.sandbox.v1 import sandbox_pb2 as pb

from preservarium_sandbox.engine.errors import ErrorKind, ScriptFailure
from preservarium_sandbox.outcome import CommandOutcome, Outcome

MAX_PAYLOAD_BYTES = 64 * 1024


class BadRequestError(ValueError):
    """A request the sandbox cannot run (INVALID_ARGUMENT)."""


def script_error(failure: ScriptFailure) -> pb.ScriptError:
    """The proto form of a structured failure."""
    error = pb.ScriptError(
        kind="ERROR_KIND_" + failure.kind.value.upper(),
        message=failure.message,
    )
    if failure.line is not None:
        error.line = failure.line
    return error


def failure_outcome(kind: ErrorKind, message: str) -> Outcome:
    """An outcome that is only a failure."""
    return Outcome(failure=ScriptFailure(kind, message))


def contact_job(contact: pb.Contact) -> dict[str, Any]:
    """The worker's form of a contact (its payload travels apart, as the frame's blob)."""
    if len(contact.payload) > MAX_PAYLOAD_BYTES:
        raise BadRequestError(f"payload over {MAX_PAYLOAD_BYTES} bytes")
    return {
        "device_id": contact.device_id if contact.HasField("device_id") else None,
        "device_type": contact.device_type,
        "path": contact.path,
        "method": contact.method,
        "confirmable": contact.confirmable,
        "received_at": contact.received_at,
        "query": dict(contact.query),
    }


def command_job(command: pb.Command) -> dict[str, Any]:
    """The worker's form of a command; params must be a JSON object."""
    try:
        params = json.loads(command.params_json) if command.params_json else {}
    except ValueError as exc:
        raise BadRequestError(f"params_json is not JSON: {exc}") from None
    if type(params) is not dict:
        raise BadRequestError("params_json must be a JSON object")
    return {
        "request_id": command.request_id,
        "device_id": command.device_id,
        "command": command.command,
        "params": params,
    }


def command_result(outcome: CommandOutcome) -> pb.CommandResult:
    """The proto form of a format_command() outcome."""
    if outcome.failure is not None:
        return pb.CommandResult(error=script_error(outcome.failure))
    return pb.CommandResult(payload=outcome.payload or b"")


def fill_parse_answer(response: pb.ParseResponse | pb.TestParserResponse, outcome: Outcome) -> None:
    """The outcome part of a Parse or TestParser answer: an error, or the result and the
    command's outcome. Filled in place: the document is copied into the answer once."""
    if outcome.failure is not None:
        response.error.CopyFrom(script_error(outcome.failure))
        return
    result = response.result
    result.SetInParent()  # a result with nothing set is still a result
    result.warnings.extend(outcome.warnings)
    if outcome.device_id is not None:
        result.device_id = outcome.device_id
    if outcome.data_json is not None:
        result.data_json = outcome.data_json
    if outcome.reply is not None:
        result.reply = outcome.reply
    if outcome.command is not None:
        response.command.CopyFrom(command_result(outcome.command))
