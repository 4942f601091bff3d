"""Output checks by exact type: what a parser returns is copied into plain JSON values.

Exact type checks (`type(x) is dict`) mean no method of a parser-made object (a str
subclass, a generator, a dict subclass with hooks) ever runs in host code. The same
checks run in the worker and, on the decoded JSON, again in the parent.
"""

from __future__ import annotations

import json
import math
from typing import Any

from preservarium.contract.kinds import ErrorKind

from preservarium_sandbox.engine.errors import ScriptFailure
from preservarium_sandbox.limits import MAX_TOKEN_CHARS

INT_MIN = -(2**63)
INT_MAX = 2**64 - 1


def _invalid(message: str) -> ScriptFailure:
    return ScriptFailure(ErrorKind.INVALID_OUTPUT, message)


def _check_scalar(value: Any, kind: type) -> int:
    """Check one scalar by exact type; return a rough JSON size for the budget."""
    if kind is str:
        return len(value) + 2
    if kind is int:
        if not INT_MIN <= value <= INT_MAX:
            raise _invalid("an integer in the output is out of the 64-bit range")
        return 8
    if kind is float:
        if not math.isfinite(value):
            raise _invalid("the output holds a NaN or infinite number")
        return 8
    if kind is bool or value is None:
        return 5
    raise _invalid(f"the output holds a value of type {kind.__name__}")


def document_json(value: Any, *, max_depth: int, max_bytes: int) -> str:
    """A parse() result as JSON text, after an exact-type check of every node.

    The check runs first and touches nothing but exact dict, list, tuple, str, int,
    float, bool and None, so json.dumps afterwards calls no method a parser defined.
    Depth bounds cycles; a running budget stops a huge output early.
    """
    if type(value) is not dict:
        raise _invalid(f"parse() must return a dict, not {type(value).__name__}")
    budget = max_bytes
    stack: list[tuple[Any, int]] = [(value, 1)]
    isfinite = math.isfinite
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise _invalid(f"the output is nested deeper than {max_depth} levels (or cyclic)")
        if type(node) is dict:
            budget -= 2
            for key in node:
                if type(key) is not str:
                    raise _invalid(f"a dict key in the output is a {type(key).__name__}, not str")
                budget -= len(key) + 4
            items = node.values()
        else:
            budget -= len(node) + 2
            items = node
        # The common scalars inline (about sixty per Efento document); the rest, and
        # every refusal, in _check_scalar.
        for item in items:
            kind = type(item)
            if kind is str:
                budget -= len(item) + 2
            elif (kind is float and isfinite(item)) or (kind is int and INT_MIN <= item <= INT_MAX):
                budget -= 8
            elif kind is dict or kind is list or kind is tuple:
                stack.append((item, depth + 1))
            else:
                budget -= _check_scalar(item, kind)
        if budget < 0:
            raise _invalid("the output is over the size limit")
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    if len(text.encode("utf-8")) > max_bytes:
        raise _invalid("the output is over the size limit")
    return text


def _check_text(text: str) -> None:
    """Non-ASCII text (ASCII is checked inline, the common case) must encode as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid("the output holds a lone surrogate (not Unicode text)") from None


def check_decoded(value: Any, *, max_depth: int) -> dict[str, Any]:
    """Check a document the parent decoded from a worker's JSON, without copying it.

    json.loads only ever makes dict, list, str, int, float, bool and None (keys are
    str), and the frame size bounds the document's size: what is left to check is the
    root type, the depth, integer range, finite floats (1e999 decodes to inf) and text
    that is Unicode (an escaped lone surrogate decodes to a str that is not).
    """
    if type(value) is not dict:
        raise _invalid("parse() output is not a JSON object")
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise _invalid(f"the output is nested deeper than {max_depth} levels")
        if type(node) is dict:
            for key in node:
                if not key.isascii():
                    _check_text(key)
            items = node.values()
        else:
            items = node
        for item in items:
            kind = type(item)
            if kind is dict or kind is list:
                stack.append((item, depth + 1))
            elif kind is str:
                if not item.isascii():
                    _check_text(item)
            elif kind is int:
                if not INT_MIN <= item <= INT_MAX:
                    raise _invalid("an integer in the output is out of the 64-bit range")
            elif kind is float and not math.isfinite(item):
                raise _invalid("the output holds a NaN or infinite number")
    return value


def checked_bytes(value: Any, *, function: str, max_bytes: int, optional: bool) -> bytes | None:
    """reply()/format_command() output: exactly bytes (or None where allowed), size-capped."""
    if value is None and optional:
        return None
    if type(value) is bytearray:
        value = bytes(value)
    if type(value) is not bytes:
        expected = "bytes or None" if optional else "bytes"
        raise _invalid(f"{function}() must return {expected}, not {type(value).__name__}")
    if len(value) > max_bytes:
        raise _invalid(f"{function}() returned {len(value)} bytes, over the limit of {max_bytes}")
    return value


def checked_device_id(value: Any) -> str | None:
    """identify() output: a device id string, or None for a contact that names no device."""
    from preservarium.ids import is_device_id

    if value is None:
        return None
    if type(value) is not str:
        raise _invalid(f"identify() must return str or None, not {type(value).__name__}")
    if not is_device_id(value):
        raise _invalid("identify() must return 1 to 64 characters of A-Z a-z 0-9 . _ : -")
    return value


def checked_token(value: Any) -> str | None:
    """token() output: the credential a payload carries (1 to 256 characters), or None."""
    if value is None:
        return None
    if type(value) is not str:
        raise _invalid(f"token() must return str or None, not {type(value).__name__}")
    if not 0 < len(value) <= MAX_TOKEN_CHARS:
        raise _invalid(f"token() must return 1 to {MAX_TOKEN_CHARS} characters")
    return value
