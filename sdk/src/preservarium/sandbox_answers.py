"""What the sandbox answers, as SDK values: callers of SandboxClient never see protobuf.

A script's failure is an answer (`ScriptError`, by kind), not an exception: exceptions
are kept for the infrastructure (SandboxUnavailableError, SandboxRequestError).

The answers of every contact are NamedTuples: immutable like a frozen dataclass, and
built in a fraction of its time (a frozen dataclass sets each field through
object.__setattr__), which the gateway's hot path pays once per contact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from preservarium.contract.kinds import ErrorKind


@dataclass(frozen=True, slots=True)
class ScriptError:
    """Why a parser call produced no result: its kind, a message, the parser's line."""

    kind: ErrorKind
    message: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


class CommandAnswer(NamedTuple):
    """format_command()'s bytes, or why there are none."""

    payload: bytes | None = None
    error: ScriptError | None = None


class ParserVersion(NamedTuple):
    """The parser version that answered."""

    name: str
    version: int

    def as_record(self) -> dict[str, str | int]:
        """`{name, version}`, as the records carry it."""
        return {"name": self.name, "version": self.version}


class ParseAnswer(NamedTuple):
    """The sandbox's answer to one contact: data, or a ScriptError; with the command the
    same call formatted, when it was given one."""

    parser: ParserVersion
    error: ScriptError | None = None
    # What identify() named (route contacts), else the contact's own device id.
    device_id: str | None = None
    # parse() output, a JSON object encoded as UTF-8 (spliced into the record as is).
    data_json: bytes = b""
    warnings: tuple[str, ...] = ()
    reply: bytes | None = None
    # What token() found in the payload (route contacts): checked, never recorded.
    token: str | None = None
    command: CommandAnswer | None = None
    printed: str = ""
    # With an error on a route contact: what identify() (and token()) had named before a
    # later entry point failed, so that the contact can be parsed again as that device.
    identified_device_id: str | None = None
    identified_token: str | None = None
    # On a background call (a replay): how many times a live call waited for a worker
    # behind background work while it ran (ParseResponse.live_waited); 0 on live calls.
    live_waited: int = 0

    @property
    def ok(self) -> bool:
        """True when the parser produced data."""
        return self.error is None


class TrialAnswer(NamedTuple):
    """TestParser's answer: an unsaved source run the way Parse (and FormatCommand)
    would run it.

    `answer` is what Parse would have answered, but that its parser is `UNSAVED`
    (`ParserVersion("", 0)`: an unsaved source has no name or version) and it never
    carries `identified_*`. Without a contact it holds the compile error, or no error and
    no data (the source compiled); with a command, `answer.command` is its outcome.
    """

    answer: ParseAnswer
    # How long the sandbox spent on the call.
    duration_ms: float = 0.0
