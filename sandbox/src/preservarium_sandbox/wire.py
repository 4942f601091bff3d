"""Translation between the gRPC messages and the engine's jobs and outcomes.

Every request value is checked here, at the edge, into a form that can always be encoded
again (strict JSON, valid UTF-8, bounded sizes and nesting): whatever is wrong with a
request is an INVALID_ARGUMENT answer, never an exception deeper in.
"""

from __future__ import annotations

import json
import math
from typing import Any

from preservarium.attributes import InvalidAttributesError, decode_attributes
from preservarium.contract.kinds import ErrorKind
from preservarium.sandbox.v1 import sandbox_pb2 as pb

from preservarium_sandbox.engine.errors import ScriptFailure
from preservarium_sandbox.limits import Limits
from preservarium_sandbox.outcome import CommandOutcome, Outcome


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


def contact_job(contact: pb.Contact, limits: Limits) -> dict[str, Any]:
    """The worker's form of a contact: the parser's `metadata` (docs/parsers.md), key by
    key, in the order parsers see them. The one place in the sandbox that names its
    fields: the worker hands each entry point a copy of this dict (engine/runner.py), so a
    new metadata field is a field of the proto's Contact and a line here. The payload
    travels apart, as the frame's blob."""
    if len(contact.payload) > limits.max_payload_bytes:
        raise BadRequestError(f"payload over {limits.max_payload_bytes} bytes")
    if len(contact.query) > limits.max_query_entries:
        raise BadRequestError(f"query over {limits.max_query_entries} entries")
    return {
        "device_id": (
            _text(contact.device_id, "device_id", limits) if contact.HasField("device_id") else None
        ),
        "device_type": _text(contact.device_type, "device_type", limits),
        "path": _text(contact.path, "path", limits),
        "method": _text(contact.method, "method", limits),
        "confirmable": contact.confirmable,
        "received_at": contact.received_at,
        "query": {
            _text(key, "query key", limits): _text(value, "query value", limits)
            for key, value in contact.query.items()
        },
        "attributes": _attributes(contact.attributes_json, limits),
        "uplink_id": (
            _text(contact.uplink_id, "uplink_id", limits) if contact.HasField("uplink_id") else None
        ),
    }


def command_job(command: pb.Command, limits: Limits) -> dict[str, Any]:
    """The worker's form of a command; params must be a JSON object (see _params)."""
    return {
        "request_id": _text(command.request_id, "request_id", limits),
        "device_id": _text(command.device_id, "device_id", limits),
        "command": _text(command.command, "command", limits),
        "params": _params(command.params_json, limits) if command.params_json else {},
        "attributes": _attributes(command.attributes_json, limits),
    }


def checked_source(source: str, limits: Limits) -> str:
    """A TestParser source: UTF-8 text within the source limit."""
    if _utf8_size(source, "source") > limits.max_source_bytes:
        raise BadRequestError(f"source over {limits.max_source_bytes} bytes")
    return source


def _utf8_size(text: str, what: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise BadRequestError(f"{what} is not valid Unicode text") from None


def _text(value: str, what: str, limits: Limits) -> str:
    if len(value) > limits.max_field_chars:
        raise BadRequestError(f"{what} over {limits.max_field_chars} characters")
    _utf8_size(value, what)
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e999 parses as inf, which JSON cannot carry back
        raise ValueError(f"{text} is out of range")
    return number


def _params(text: str, limits: Limits) -> dict[str, Any]:
    """Params as strict JSON that can always be encoded again: no NaN or Infinity, no
    lone surrogates (a "\\ud800" escape), within the size and nesting limits."""
    if _utf8_size(text, "params_json") > limits.max_params_bytes:
        raise BadRequestError(f"params_json over {limits.max_params_bytes} bytes")
    try:
        params = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, RecursionError) as exc:
        raise BadRequestError(f"params_json is not strict JSON: {exc}") from None
    if type(params) is not dict:
        raise BadRequestError("params_json must be a JSON object")
    _check_depth(params, limits.max_params_depth)
    # The proof that the value travels: exactly what the worker frame will do with it.
    _utf8_size(json.dumps(params, ensure_ascii=False, allow_nan=False), "params_json")
    return params


def _attributes(text: str, limits: Limits) -> dict[str, Any]:
    """Attributes as the registry stores them: a strict JSON object within the attribute
    bounds (preservarium.attributes), checked again here since any client may call."""
    if _utf8_size(text, "attributes_json") > limits.max_attributes_bytes:
        raise BadRequestError(f"attributes_json over {limits.max_attributes_bytes} bytes")
    try:
        return decode_attributes(text)
    except InvalidAttributesError as exc:
        raise BadRequestError(f"attributes_json: {exc}") from None


def _check_depth(value: Any, max_depth: int) -> None:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if type(item) is dict else item if type(item) is list else ()
        if children and depth > max_depth:
            raise BadRequestError(f"params_json nests deeper than {max_depth}")
        stack.extend((child, depth + 1) for child in children)


def command_result(outcome: CommandOutcome) -> pb.CommandResult:
    """The proto form of a format_command() outcome."""
    if outcome.failure is not None:
        return pb.CommandResult(error=script_error(outcome.failure))
    return pb.CommandResult(payload=outcome.payload or b"")


def fill_parse_answer(response: pb.ParseResponse | pb.TestParserResponse, outcome: Outcome) -> None:
    """The outcome part of a Parse or TestParser answer: an error, or the result and the
    command's outcome. Filled in place: the document is copied into the answer once."""
    if outcome.printed:
        response.printed = outcome.printed
    if outcome.failure is not None:
        response.error.CopyFrom(script_error(outcome.failure))
        if isinstance(response, pb.ParseResponse) and outcome.identified_device_id is not None:
            response.identified_device_id = outcome.identified_device_id
            if outcome.identified_token is not None:
                response.identified_token = outcome.identified_token
        return
    result = response.result
    result.SetInParent()  # a result with nothing set is still a result
    result.warnings.extend(outcome.warnings)
    if outcome.device_id is not None:
        result.device_id = outcome.device_id
    if outcome.token is not None:
        result.token = outcome.token
    if outcome.data_json is not None:
        result.data_json = outcome.data_json
    if outcome.reply is not None:
        result.reply = outcome.reply
    if outcome.command is not None:
        response.command.CopyFrom(command_result(outcome.command))
