"""Output checks by exact type: what a parser returns is copied into plain JSON values.

Exact type checks (`type(x) is dict`) mean no method of a parser-made object (a str
subclass, a generator, a dict subclass with hooks) ever runs in host code. The same
checks run in the worker and, on the decoded JSON, again in the parent.
"""

from __future__ import annotations

import json
import math
from typing import Any

from preservarium_sandbox.engine.errors import ErrorKind, ScriptFailure

INT_MIN = -(2**63)
INT_MAX = 2**64 - 1
_SCALARS = (str, bool, type(None))


def _invalid(message: str) -> ScriptFailure:
    return ScriptFailure(ErrorKind.INVALID_OUTPUT, message)


def _scalar(value: Any, budget: list[int]) -> Any:
    kind = type(value)
    if kind is str:
        budget[0] -= len(value) + 2
    elif kind is int:
        if not INT_MIN <= value <= INT_MAX:
            raise _invalid("an integer in the output is out of the 64-bit range")
        budget[0] -= 8
    elif kind is float:
        if not math.isfinite(value):
            raise _invalid("the output holds a NaN or infinite number")
        budget[0] -= 8
    elif kind not in _SCALARS:
        raise _invalid(f"the output holds a value of type {kind.__name__}")
    else:
        budget[0] -= 5
    if budget[0] < 0:
        raise _invalid("the output is over the size limit")
    return value


def plain_json(value: Any, *, max_depth: int, max_bytes: int) -> dict[str, Any]:
    """Copy a parse() result into plain JSON values, or raise invalid_output."""
    if type(value) is not dict:
        raise _invalid(f"parse() must return a dict, not {type(value).__name__}")
    budget = [max_bytes]
    root: dict[str, Any] = {}
    stack: list[tuple[Any, Any, int]] = [(value, root, 1)]
    while stack:
        source, target, depth = stack.pop()
        if depth > max_depth:
            raise _invalid(f"the output is nested deeper than {max_depth} levels (or cyclic)")
        if type(source) is dict:
            items = list(source.items())
            budget[0] -= 2 * len(items) + 2
            for key, item in items:
                if type(key) is not str:
                    raise _invalid(f"a dict key in the output is a {type(key).__name__}, not str")
                budget[0] -= len(key) + 3
                target[key] = _child(item, stack, depth, budget)
        else:
            budget[0] -= len(source) + 2
            target.extend(_child(item, stack, depth, budget) for item in source)
        if budget[0] < 0:
            raise _invalid("the output is over the size limit")
    return root


def _child(item: Any, stack: list[tuple[Any, Any, int]], depth: int, budget: list[int]) -> Any:
    kind = type(item)
    if kind is dict:
        copy: Any = {}
    elif kind is list or kind is tuple:
        copy = []
    else:
        return _scalar(item, budget)
    stack.append((item, copy, depth + 1))
    return copy


def check_decoded(value: Any, *, max_depth: int) -> dict[str, Any]:
    """Check a document the parent decoded from a worker's JSON, without copying it.

    json.loads only ever makes dict, list, str, int, float, bool and None (keys are
    str), and the frame size bounds the document's size: what is left to check is the
    root type, the depth, integer range and finite floats (1e999 decodes to inf).
    """
    if type(value) is not dict:
        raise _invalid("parse() output is not a JSON object")
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise _invalid(f"the output is nested deeper than {max_depth} levels")
        for item in node.values() if type(node) is dict else node:
            kind = type(item)
            if kind is dict or kind is list:
                stack.append((item, depth + 1))
            elif kind is int:
                if not INT_MIN <= item <= INT_MAX:
                    raise _invalid("an integer in the output is out of the 64-bit range")
            elif kind is float and not math.isfinite(item):
                raise _invalid("the output holds a NaN or infinite number")
    return value


def encode_document(value: dict[str, Any], *, max_bytes: int) -> str:
    """JSON text of a plain document, checked against the size cap."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    if len(text.encode("utf-8")) > max_bytes:
        raise _invalid("the output is over the size limit")
    return text


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
