"""What one job came to inside the worker: engine.runner.run_job's typed, frozen result.

Plain values only (str, bytes, the wire form of a failure): nothing in a result points
back at a parser-made object or at a traceback, so holding it after the call's cleanup
keeps none of the call's objects alive. The worker adds its own fields and encodes it
with worker.protocol.encode_answer; this module imports nothing of the sandbox, so the
worker's protocol can name these types without the engine ever importing the worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ContactResult:
    """What identify() and token() (when asked), parse() and reply() gave, checked."""

    device_id: str | None
    token: str | None
    data_json: str  # parse()'s document, as compact JSON text
    reply: bytes | None = None


@dataclass(frozen=True, slots=True)
class CommandResult:
    """format_command()'s bytes, or the wire form of why there are none."""

    payload: bytes = b""
    error: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Identified:
    """With a failure: the device identify() had named, and token()'s credential when
    token() had run (`token_found`: the answer then says it, None included)."""

    device_id: str
    token: str | None = None
    token_found: bool = False


@dataclass(frozen=True, slots=True)
class JobResult:
    """One job's result. A success has `contact` (when the job had one), `command` (when
    it had one) and its `warnings`; a failure has `error` (ScriptFailure.to_wire()'s form)
    and `identified` when identify() had named a device. `printed` either way."""

    ok: bool
    error: dict[str, Any] | None = None
    identified: Identified | None = None
    contact: ContactResult | None = None
    command: CommandResult | None = None
    warnings: tuple[str, ...] = ()
    printed: str | None = None  # None when the call printed nothing
