"""Device attributes: the integrator's JSON object that parsers receive as
`metadata["attributes"]` (and `command["attributes"]`).

Attributes are checked when they are written, so that whatever the registry holds can
always travel to the sandbox: a JSON object of strict JSON (no NaN or Infinity, no lone
surrogates), at most MAX_ATTRIBUTES_BYTES as compact JSON and MAX_ATTRIBUTES_DEPTH deep.
The sandbox checks them again at its edge with the same bounds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from preservarium.errors import PreservariumError

MAX_ATTRIBUTES_BYTES = 16 * 1024
MAX_ATTRIBUTES_DEPTH = 8


class InvalidAttributesError(PreservariumError):
    """Attributes refused before they are stored; the message says why."""


def encode_attributes(attributes: Mapping[str, Any]) -> str:
    """The compact JSON text of attributes, as stored, cached and sent to the sandbox."""
    return json.dumps(dict(attributes), ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def checked_attributes(value: object) -> dict[str, Any]:
    """`value` as attributes, or InvalidAttributesError naming the first problem."""
    if not isinstance(value, dict):
        raise InvalidAttributesError("attributes must be a JSON object")
    _check_values(value)
    try:
        size = len(encode_attributes(value).encode("utf-8"))
    except (TypeError, ValueError, UnicodeEncodeError) as exc:
        raise InvalidAttributesError(f"attributes are not strict JSON: {exc}") from None
    if size > MAX_ATTRIBUTES_BYTES:
        raise InvalidAttributesError(
            f"attributes are {size} bytes as JSON, over the limit of {MAX_ATTRIBUTES_BYTES}"
        )
    return value


def decode_attributes(text: str) -> dict[str, Any]:
    """Attributes from their JSON text ("" is {}); InvalidAttributesError when the text
    is not strict JSON or breaks a bound."""
    if not text:
        return {}
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidAttributesError(f"attributes are not strict JSON: {exc}") from None
    return checked_attributes(value)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_values(root: dict[str, Any]) -> None:
    """Only JSON types (exactly: no subclasses), string keys, finite numbers, bounded depth.
    Iterative, so that a hostile nesting cannot exhaust the stack."""
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is dict or kind is list:
            if depth > MAX_ATTRIBUTES_DEPTH:
                raise InvalidAttributesError(
                    f"attributes nest deeper than {MAX_ATTRIBUTES_DEPTH} levels"
                )
            if kind is dict and any(type(key) is not str for key in item):
                raise InvalidAttributesError("attribute keys must be strings")
            children = item.values() if kind is dict else item
            stack.extend((child, depth + 1) for child in children)
        elif kind is float and not math.isfinite(item):
            raise InvalidAttributesError(f"attributes hold {item}, which JSON cannot carry")
        elif kind not in (str, int, float, bool, type(None)):
            raise InvalidAttributesError(f"attributes hold a {kind.__name__}, not a JSON value")
