"""The vetted import namespaces: facades of chosen callables, never a module object.

A module object leads to `sys` and `os` through its attributes; a facade holds only the
functions, types and constants listed here, and cannot be written to.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import math
import operator
import re
import struct
import sys
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from preservarium import protowire
from preservarium.parser_source import VETTED_IMPORTS


class VettedModule:
    """Base of the facade types: read-only, no state, no way back to a real module."""

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("vetted modules are read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("vetted modules are read-only")

    def __repr__(self) -> str:
        return f"<vetted module {type(self).__name__}>"


def make_facade(name: str, members: Mapping[str, Any]) -> VettedModule:
    """A facade instance whose attributes are exactly `members`."""
    namespace: dict[str, Any] = {"__slots__": ()}
    for key, value in members.items():
        if key.startswith("_"):
            raise ValueError(f"facade member {key!r} of {name} starts with '_'")
        is_function = callable(value) and not isinstance(value, type)
        namespace[key] = staticmethod(value) if is_function else value
    facade_type = type(name, (VettedModule,), namespace)
    return facade_type()  # type: ignore[no-any-return]


def _public(module: Any, names: list[str] | None = None) -> dict[str, Any]:
    chosen = names if names is not None else [n for n in dir(module) if not n.startswith("_")]
    return {name: getattr(module, name) for name in chosen}


def exact(value: Any) -> Any:
    """A str or bytes subclass instance as a copy of exact type; anything else unchanged.

    Module-level caches (`re`'s patterns, `struct`'s formats) keep their keys: handed a
    parser's subclass, they would keep its class, and what the class holds, alive after
    the call. Copies of exact type carry nothing of the parser's.
    """
    kind = type(value)
    if kind is str or kind is bytes:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bytes):
        return bytes.__bytes__(value)
    return value


def _exact_flags(value: Any) -> Any:
    return value if type(value) is int else operator.index(value)


def _exact_arguments(
    function: Callable[..., Any], name: str, flags_at: int | None
) -> Callable[..., Any]:
    """`function` called with an exact first argument (and exact `flags`, if it has them)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        if args:
            args = (exact(args[0]), *args[1:])
        if flags_at is not None:
            if len(args) > flags_at:
                args = (*args[:flags_at], _exact_flags(args[flags_at]), *args[flags_at + 1 :])
            if "flags" in kwargs:
                kwargs["flags"] = _exact_flags(kwargs["flags"])
        return function(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = function.__doc__
    return call


def _exact_members(module: Any, flags_at: Mapping[str, int | None]) -> dict[str, Any]:
    return {
        name: _exact_arguments(getattr(module, name), name, at) for name, at in flags_at.items()
    }


def _json_loads(text: str | bytes) -> Any:
    """json.loads without hooks."""
    return json.loads(exact(text))


def _json_dumps(
    value: Any,
    *,
    indent: int | None = None,
    sort_keys: bool = False,
    separators: tuple[str, str] | None = None,
) -> str:
    """json.dumps without custom encoders."""
    return json.dumps(value, indent=indent, sort_keys=sort_keys, separators=separators)


_RE_NAMES = [
    "escape", "error", "IGNORECASE", "I", "MULTILINE", "M", "DOTALL", "S", "ASCII", "A",
    "VERBOSE", "X",
]  # fmt: skip
# re functions that take a pattern first (cached by re), and where their `flags` sits.
_RE_PATTERN_FIRST: dict[str, int | None] = {
    "compile": 1, "match": 2, "fullmatch": 2, "search": 2, "findall": 2, "finditer": 2,
    "sub": 4, "subn": 4, "split": 3,
}  # fmt: skip
# struct functions that take a format first (cached by struct).
_STRUCT_FORMAT_FIRST: dict[str, int | None] = dict.fromkeys(
    ["pack", "unpack", "unpack_from", "iter_unpack", "calcsize"]
)
_STRUCT_NAMES = ["Struct", "error"]
_BASE64_NAMES = [
    "b64encode", "b64decode", "standard_b64encode", "standard_b64decode", "urlsafe_b64encode",
    "urlsafe_b64decode", "b32encode", "b32decode", "b32hexencode", "b32hexdecode", "b16encode",
    "b16decode", "b85encode", "b85decode", "a85encode", "a85decode", "encodebytes",
    "decodebytes",
]  # fmt: skip
_BINASCII_NAMES = [
    "hexlify", "unhexlify", "b2a_hex", "a2b_hex", "b2a_base64", "a2b_base64", "crc32",
    "crc_hqx", "Error", "Incomplete",
]  # fmt: skip
_DATETIME_NAMES = ["date", "time", "datetime", "timedelta", "timezone", "MINYEAR", "MAXYEAR"]
_PROTOWIRE_NAMES = [
    "WireError", "VARINT", "FIXED64", "LEN", "FIXED32", "decode", "decode_fields",
    "zigzag_decode", "zigzag_encode", "to_int32", "to_int64", "to_float", "to_double",
    "packed_varints", "packed_sint", "packed_fixed32", "packed_fixed64", "packed_floats",
    "first", "last", "encode_varint", "encode_field", "encode",
]  # fmt: skip


def _warm_up() -> None:
    """Fill the modules' lazy tables now, so a first call does not count them as its own.

    strptime imports _strptime on first use (before the worker is sealed, it still can);
    base64 builds its base32/85 and ascii85 tables the first time they are used.
    """
    datetime.datetime.strptime("2000", "%Y")
    for encode, decode in (
        (base64.b32encode, base64.b32decode),
        (base64.b32hexencode, base64.b32hexdecode),
        (base64.b85encode, base64.b85decode),
        (base64.a85encode, base64.a85decode),
    ):
        decode(encode(b"warm"))


def _build() -> Mapping[str, VettedModule]:
    _warm_up()
    members: dict[str, dict[str, Any]] = {
        "math": _public(math),
        "struct": {
            **_exact_members(struct, _STRUCT_FORMAT_FIRST),
            **_public(struct, _STRUCT_NAMES),
        },
        "base64": _public(base64, _BASE64_NAMES),
        "binascii": _public(binascii, _BINASCII_NAMES),
        "json": {"loads": _json_loads, "dumps": _json_dumps, "JSONDecodeError": ValueError},
        "datetime": {**_public(datetime, _DATETIME_NAMES), "UTC": datetime.UTC},
        "re": {**_public(re, _RE_NAMES), **_exact_members(re, _RE_PATTERN_FIRST)},
        "protowire": _public(protowire, _PROTOWIRE_NAMES),
    }
    return MappingProxyType({name: make_facade(name, m) for name, m in members.items()})


VETTED_MODULES: Mapping[str, VettedModule] = _build()
ALLOWED_IMPORTS = frozenset(VETTED_MODULES)
if ALLOWED_IMPORTS != VETTED_IMPORTS:  # the sdk's upload check and the sandbox must agree
    raise RuntimeError(f"facades {sorted(ALLOWED_IMPORTS)} != {sorted(VETTED_IMPORTS)}")


class ImportDenied(ImportError):
    """An import of a module that is not on the vetted list."""


# Modules the interpreter's own C code imports while running a vetted function (for
# example datetime.now() imports `time`). A parser never receives them: its own imports
# are checked when it is compiled, and it cannot name `__import__`.
HOST_INTERNAL = frozenset({"time", "_strptime"})


def guarded_import(
    name: str,
    globals: Any = None,
    locals: Any = None,
    fromlist: Any = (),
    level: int = 0,
) -> Any:
    """The only `__import__` a parser's code runs under: vetted facades, nothing else."""
    if level == 0 and name in HOST_INTERNAL and name in sys.modules:
        return sys.modules[name]
    facade = VETTED_MODULES.get(name) if level == 0 else None
    if facade is None:
        allowed = ", ".join(sorted(ALLOWED_IMPORTS))
        raise ImportDenied(f"import of {name!r} is not allowed; parsers may import: {allowed}")
    return facade


ImportHook = Callable[..., VettedModule]
