"""Structured failures of parser scripts; their kinds are the contract's ErrorKind."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from preservarium.contract.kinds import SANDBOX_KINDS, ErrorKind

from preservarium_sandbox.limits import MAX_MESSAGE_CHARS


def clean_text(text: str) -> str:
    """Text that encodes as UTF-8 (lone surrogates, which a parser can make, become '?').

    Everything a parser's text reaches (the answer frame, the proto, Kafka) needs UTF-8:
    the worker cleans what it sends and the parent cleans again what it receives.
    """
    return text.encode("utf-8", "replace").decode("utf-8")


@dataclass(frozen=True, slots=True)
class ScriptFailure(Exception):
    """A structured script failure: kind, message and the parser line when there is one."""

    kind: ErrorKind
    message: str
    line: int | None = None

    def to_wire(self) -> dict[str, Any]:
        """The JSON form used between worker and parent."""
        return {"kind": self.kind.value, "message": self.message, "line": self.line}

    @classmethod
    def from_wire(cls, value: Any) -> ScriptFailure:
        """Rebuild from the worker's JSON, refusing anything malformed."""
        if type(value) is not dict:
            raise ValueError("error is not an object")
        kind = ErrorKind(str(value.get("kind")))
        if kind not in SANDBOX_KINDS:
            raise ValueError("not a kind the sandbox answers")
        message = value.get("message")
        line = value.get("line")
        if type(message) is not str or not (line is None or type(line) is int):
            raise ValueError("malformed error")
        return cls(kind, clean_text(message[:MAX_MESSAGE_CHARS]), line)
