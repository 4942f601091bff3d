"""Run one job of a compiled parser: a fresh module namespace, entry points, checked outputs.

Everything that touches parser-made objects (calling, converting, formatting an error
message) happens before the caller disarms the deadline, so a hostile `__str__`-like
trick costs only this call's time budget.
"""

from __future__ import annotations

import copy
import dis
import gc
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from preservarium.contract.kinds import ErrorKind
from preservarium.parser_source import FILENAME

from preservarium_sandbox.engine.compiler import CompiledParser
from preservarium_sandbox.engine.display import scrub, shown_str
from preservarium_sandbox.engine.errors import ScriptFailure, clean_text
from preservarium_sandbox.engine.facades import ImportDenied
from preservarium_sandbox.engine.outputs import (
    checked_bytes,
    checked_device_id,
    checked_token,
    document_json,
)
from preservarium_sandbox.engine.policy import fresh_globals
from preservarium_sandbox.engine.printing import CallOutput
from preservarium_sandbox.engine.residue import forget_call_state
from preservarium_sandbox.engine.result import CommandResult, ContactResult, Identified, JobResult
from preservarium_sandbox.limits import MAX_MESSAGE_CHARS, Limits

_RAISE = dis.opmap["RAISE_VARARGS"]


class Deadline(BaseException):
    """Raised inside the worker when a call's time (or CPU) budget is spent."""


@dataclass
class Warnings:
    """The warnings of one call: capped in count and length, in clean UTF-8.

    Parsers get `warner()`, a plain function closing over this object: nothing a parser
    can reach leads to the list (a writable list would let it put anything in the answer).
    """

    limits: Limits
    items: list[str] = field(default_factory=list)

    def warner(self) -> Callable[[object], None]:
        """The `warn(message)` a parser calls."""
        items, limits = self.items, self.limits

        def warn(message: object) -> None:
            if len(items) < limits.max_warnings:
                items.append(clean_text(shown_str(message)[: limits.max_warning_chars]))

        return warn


def _parser_line(tb: TracebackType | None) -> int | None:
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _allocation_failed(exc: MemoryError) -> bool:
    """True for a MemoryError the interpreter raised (an allocation refused by RLIMIT_AS);
    False for one a `raise` statement made, which cost no memory: that is an ordinary
    runtime_error, not a reason to replace the worker."""
    tb = exc.__traceback__
    if tb is None:
        return True
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_code[tb.tb_lasti] != _RAISE


def failure_from(exc: BaseException, limits: Limits) -> ScriptFailure:
    """Map whatever a parser raised to a structured failure."""
    if isinstance(exc, ScriptFailure):
        return exc
    line = _parser_line(exc.__traceback__)
    if isinstance(exc, Deadline):
        return ScriptFailure(
            ErrorKind.TIMEOUT, f"the parser ran past its limit of {limits.timeout_ms} ms", line
        )
    if isinstance(exc, MemoryError) and _allocation_failed(exc):
        return ScriptFailure(
            ErrorKind.MEMORY_LIMIT,
            f"the parser ran past its memory limit of {limits.memory_mb} MiB",
        )
    if isinstance(exc, ImportDenied):
        return ScriptFailure(ErrorKind.IMPORT_DENIED, str(exc), line)
    name = type(exc).__name__
    try:
        detail = scrub(str(exc)[:MAX_MESSAGE_CHARS])  # C code puts reprs in its messages
    except Exception:  # a parser-made exception whose str() fails
        detail = ""
    message = f"{name}: {detail}" if detail else name
    if line is not None:
        message = f"line {line}: {message}"
    return ScriptFailure(ErrorKind.RUNTIME_ERROR, clean_text(message[:MAX_MESSAGE_CHARS]), line)


def _entry(namespace: dict[str, Any], name: str) -> Callable[..., Any]:
    function: Callable[..., Any] | None = namespace.get(name)
    if function is None or not callable(function):
        raise ScriptFailure(ErrorKind.MISSING_FUNCTION, f"the parser defines no {name}() function")
    return function


def _fresh(value: Any) -> Any:
    """A copy of a JSON value with containers of its own (a job arrives as JSON: dicts,
    lists and immutable scalars only); faster than copy.deepcopy on such small values."""
    if type(value) is dict:
        return {key: _fresh(item) for key, item in value.items()}
    if type(value) is list:
        return [_fresh(item) for item in value]
    return value


def _metadata(contact: dict[str, Any], device_id: str | None) -> dict[str, Any]:
    """The parser's `metadata` for one entry point: the job's contact as wire.contact_job
    made it (the one place in the sandbox that names its fields), with `device_id` as
    known by then. Fresh containers for every call: what one entry point changes, the
    next never sees."""
    metadata: dict[str, Any] = _fresh(contact)
    metadata["device_id"] = device_id
    return metadata


def _run_contact(
    namespace: dict[str, Any],
    contact: dict[str, Any],
    payload: bytes,
    identify: bool,
    limits: Limits,
    identified: dict[str, Any],
) -> ContactResult:
    """identify() and token() when asked, then parse() and reply(). What identify() and
    token() found goes into `identified` as soon as it is known, so that a failure later
    in the call can still say which device the contact named."""
    device_id = contact.get("device_id")
    token = None
    if identify:
        found = _entry(namespace, "identify")(payload, _metadata(contact, device_id))
        device_id = checked_device_id(found)
        identified["device_id"] = device_id
        if callable(namespace.get("token")):  # optional: a credential in the payload
            token = checked_token(namespace["token"](payload, _metadata(contact, device_id)))
            identified["token"] = token
    parsed = _entry(namespace, "parse")(payload, _metadata(contact, device_id))
    data_json = document_json(
        parsed, max_depth=limits.max_output_depth, max_bytes=limits.max_output_bytes
    )
    reply = None
    if callable(namespace.get("reply")):
        raw = namespace["reply"](payload, _metadata(contact, device_id))
        reply = checked_bytes(
            raw, function="reply", max_bytes=limits.max_bytes_output, optional=True
        )
    return ContactResult(device_id=device_id, token=token, data_json=data_json, reply=reply)


def _run_command(
    namespace: dict[str, Any], command: dict[str, Any], limits: Limits
) -> CommandResult:
    try:
        record = {
            "request_id": command["request_id"],
            "device_id": command["device_id"],
            "command": command["command"],
            "params": command["params"],
            "attributes": copy.deepcopy(command.get("attributes") or {}),
        }
        raw = _entry(namespace, "format_command")(record)
        payload = checked_bytes(
            raw, function="format_command", max_bytes=limits.max_bytes_output, optional=False
        )
    except Deadline:
        raise
    except BaseException as exc:
        return CommandResult(error=failure_from(exc, limits).to_wire())
    return CommandResult(payload=payload or b"")


def _identified(found: dict[str, Any]) -> Identified | None:
    """What identify() (and token()) had found before a failure: None unless a device."""
    device_id = found.get("device_id")
    if device_id is None:
        return None
    return Identified(device_id, found.get("token"), token_found="token" in found)


def prepare(parser: CompiledParser, limits: Limits) -> None:
    """Run the module body once, so the calls to come copy its namespace (engine.template).

    The worker runs this under the compile's budget: a module that takes longer to load
    than one call may run (Efento's tables, on a busy machine) otherwise timed out the
    first call on every new worker, and every timeout made a new worker. What the module
    prints or raises here is dropped: the image then executes it in each call (a module
    that prints), or stays undecided and the call runs it again (one that raises), and
    the call reports it. A Deadline is the compile's and propagates.
    """
    warnings = Warnings(limits)
    output = CallOutput(limits.max_print_chars)
    warn = warnings.warner()
    namespace: dict[str, Any] = {}
    try:
        namespace = parser.image.load(
            parser.code,
            lambda: fresh_globals(warn, output=output),
            lambda: not warnings.items and not output.text(),
        )
    except Deadline:
        raise
    except BaseException:  # the first call runs the module again and says why
        pass
    finally:
        collect_leftovers(namespace)


def run_job(parser: CompiledParser, job: dict[str, Any], limits: Limits) -> JobResult:
    """Run the entry points a job asks for; return its result for the parent.

    Raises nothing but Deadline: every script failure becomes a failed result.
    """
    warnings = Warnings(limits)
    output = CallOutput(limits.max_print_chars)
    warn = warnings.warner()
    namespace: dict[str, Any] = {}
    identified: dict[str, Any] = {}
    contact: ContactResult | None = None
    command: CommandResult | None = None
    error: dict[str, Any] | None = None
    try:
        namespace = parser.image.load(
            parser.code,
            lambda: fresh_globals(warn, output=output),
            lambda: not warnings.items and not output.text(),
        )
        if job.get("contact") is not None:
            identify = bool(job.get("identify"))
            contact = _run_contact(
                namespace, job["contact"], job["blob"], identify, limits, identified
            )
        if job.get("command") is not None:
            command = _run_command(namespace, job["command"], limits)
    except Deadline:
        raise
    except BaseException as exc:
        error = failure_from(exc, limits).to_wire()
    # What it printed helps most when it failed: sent back either way.
    printed = output.text()
    shown = clean_text(printed) if printed else None
    collect_leftovers(namespace)
    if error is not None:
        return JobResult(ok=False, error=error, identified=_identified(identified), printed=shown)
    # Read after the cleanup, as the answer always was: a finalizer of this call's
    # objects may still warn, on this call's time.
    return JobResult(
        ok=True, contact=contact, command=command, warnings=tuple(warnings.items), printed=shown
    )


def collect_leftovers(namespace: dict[str, Any]) -> None:
    """Free everything this call made, now, while its deadline still runs.

    A parser's module namespace is a reference cycle (its functions point back at it):
    left to the garbage collector, its objects would die during some later call, and a
    generator's `finally` would run the parser's code on another parser's time. The
    worker disables the automatic collector, so everything a call made is young: a
    generation-0 collection here finds it all, once the vetted modules' caches have let
    go of what the call put in them (engine.residue).
    """
    forget_call_state()
    namespace.clear()
    gc.collect(0)
