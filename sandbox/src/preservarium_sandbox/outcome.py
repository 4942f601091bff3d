"""The parent's reading of what a call on a worker came to: the worker's answer, checked
again by exact type and never trusted, or the pool's word that the worker could not
answer (JobTimedOut, WorkerDied). The one place either becomes an error kind."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from preservarium.contract.kinds import ErrorKind

from preservarium_sandbox.engine.errors import ScriptFailure, clean_text
from preservarium_sandbox.engine.outputs import (
    check_decoded,
    checked_bytes,
    checked_device_id,
    checked_token,
)
from preservarium_sandbox.limits import MAX_MESSAGE_CHARS, Limits
from preservarium_sandbox.worker.protocol import Answer, ProtocolError, decode_body
from preservarium_sandbox.worker_process import CallResult, JobTimedOut, WorkerDied


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """format_command() bytes, or why there are none."""

    payload: bytes | None = None
    failure: ScriptFailure | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one job produced, in host types."""

    failure: ScriptFailure | None = None
    device_id: str | None = None
    token: str | None = None  # token() output: a credential, for the gateway to check
    data_json: bytes | None = None
    reply: bytes | None = None
    warnings: tuple[str, ...] = ()
    printed: str = ""  # what the call print()ed, up to the limits' cap, ok or not
    command: CommandOutcome | None = None
    # With a failure: the device identify() named (and token() found) before it.
    identified_device_id: str | None = None
    identified_token: str | None = None
    compiled: bool = False
    worker_died: bool = False
    worker_replaced: bool = False  # the call cost its worker (even when it succeeded)

    @property
    def ok(self) -> bool:
        """True when the parse (or compile-only check) succeeded."""
        return self.failure is None


def _malformed(what: str) -> ScriptFailure:
    return ScriptFailure(ErrorKind.INVALID_OUTPUT, f"the sandbox worker sent a malformed {what}")


def _command(value: Any, payload: bytes | None, limits: Limits) -> CommandOutcome | None:
    if value is None:
        return None
    if type(value) is not dict:
        raise _malformed("command result")
    if "error" in value:
        return CommandOutcome(failure=ScriptFailure.from_wire(value["error"]))
    if payload is None:
        raise _malformed("format_command")
    checked = checked_bytes(
        payload, function="format_command", max_bytes=limits.max_bytes_output, optional=False
    )
    return CommandOutcome(payload=checked)


def _document(value: Any, limits: Limits) -> bytes:
    """The parse() document: the answer frame's blob, a JSON object checked here again."""
    if type(value) is not bytes or not value:
        raise _malformed("parse output")
    if len(value) > limits.max_output_bytes:
        raise _malformed("parse output (over the size limit)")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("parse output (not UTF-8)") from None
    # The bytes themselves are passed on, so what was checked must be all they say.
    check_decoded(decode_body(text, unique_keys=True), max_depth=limits.max_output_depth)
    return value


def _warnings(value: Any, limits: Limits) -> tuple[str, ...]:
    if type(value) is not list or len(value) > limits.max_warnings:
        raise _malformed("warning list")
    if any(type(item) is not str for item in value):
        raise _malformed("warning")
    # Clean UTF-8, as the worker makes them: a lone surrogate would fail the proto encode.
    return tuple(clean_text(item[: limits.max_warning_chars]) for item in value)


def _printed(value: Any, limits: Limits) -> str:
    if value is None:
        return ""
    if type(value) is not str:
        raise _malformed("print output")
    return clean_text(value[: limits.max_print_chars])


def _identified(value: Any, *, has_contact: bool) -> tuple[str | None, str | None]:
    """What a failed call's identify() and token() had found: checked like a result's."""
    if value is None or not has_contact:
        return None, None
    if type(value) is not dict:
        raise _malformed("identified device")
    return checked_device_id(value.get("device_id")), checked_token(value.get("token"))


def _lost(result: JobTimedOut | WorkerDied) -> Outcome:
    """The outcome of a call whose worker could not answer: it cost the worker."""
    if isinstance(result, JobTimedOut):
        return Outcome(
            failure=ScriptFailure(
                ErrorKind.TIMEOUT,
                f"the parser ran past its limit of {result.timeout_ms} ms "
                "and its worker was killed",
            ),
            worker_replaced=True,
        )
    message = clean_text(result.message[:MAX_MESSAGE_CHARS])
    return Outcome(
        failure=ScriptFailure(result.kind, message), worker_died=True, worker_replaced=True
    )


def read_answer(result: CallResult, *, limits: Limits, has_contact: bool) -> Outcome:
    """Turn what a call came to into an Outcome, refusing anything out of contract in the
    worker's answer."""
    if not isinstance(result, Answer):
        return _lost(result)
    answer = result
    compiled = answer.compiled
    replaced = answer.recycle  # a memory recycle: the call cost its worker
    try:
        printed = _printed(answer.printed, limits)
        if not answer.ok:
            device_id, token = _identified(answer.identified, has_contact=has_contact)
            return Outcome(
                failure=ScriptFailure.from_wire(answer.error),
                printed=printed,
                identified_device_id=device_id,
                identified_token=token,
                compiled=compiled,
                worker_replaced=replaced,
            )
        device_id = None
        token = None
        data_json = None
        reply = None
        if has_contact:
            device_id = checked_device_id(answer.device_id)
            token = checked_token(answer.token)
            data_json = _document(answer.document, limits)
            reply = checked_bytes(
                answer.reply, function="reply", max_bytes=limits.max_bytes_output, optional=True
            )
        return Outcome(
            device_id=device_id,
            token=token,
            data_json=data_json,
            reply=reply,
            warnings=_warnings(answer.warnings, limits),
            printed=printed,
            command=_command(answer.command, answer.command_payload, limits),
            compiled=compiled,
            worker_replaced=replaced,
        )
    except ScriptFailure as failure:
        return Outcome(failure=failure, compiled=compiled, worker_replaced=replaced)
    except (ValueError, ProtocolError):
        return Outcome(failure=_malformed("answer"), compiled=compiled, worker_replaced=replaced)
