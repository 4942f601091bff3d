"""The restricted execution policy: the builtins and guards a parser's globals start from."""

from __future__ import annotations

import operator
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from RestrictedPython import Guards
from RestrictedPython.Eval import default_guarded_getitem, default_guarded_getiter
from RestrictedPython.Guards import _FORMATTER_UNSAFE_METHODS, full_write_guard, safe_builtins
from RestrictedPython.Limits import limited_builtins
from RestrictedPython.transformer import INSPECT_ATTRIBUTES

from preservarium_sandbox.engine.display import (
    ParserStr,
    build_class,
    shown_args,
    shown_ascii,
    shown_format,
    shown_hash,
    shown_mod,
    shown_repr,
    shown_str,
)
from preservarium_sandbox.engine.facades import guarded_import
from preservarium_sandbox.engine.nesting import (
    NESTING_ATTRIBUTES,
    ParserTuple,
    checked,
    checked_attribute,
    checked_enumerate,
    checked_zip,
    unchecked,
)
from preservarium_sandbox.engine.printing import CallOutput, print_factory
from preservarium_sandbox.engine.transformer import FORMAT_HELPERS, MOD_HELPER, NESTING_HELPER
from preservarium_sandbox.limits import DEFAULT_LIMITS

MODULE_NAME = "parser"

# Leaks addresses (ASLR) and is of no use to a parser.
_REMOVED = {"id"}

# utility_builtins hands out the real `string`, `math` and `random` modules: only the
# harmless set types are taken from it. Everything below iterates in C, which is harmless
# because our _getiter_ is the plain iter() (no per-item policy to bypass).
# range is lazy in Python 3, so RestrictedPython's 1000-element cap protects nothing that
# RLIMIT_AS and the deadline do not; parsers get the real one.
_EXTRA_BUILTINS: dict[str, Any] = {
    "range": range,
    "set": set,
    "frozenset": frozenset,
    "dict": dict,
    "list": list,
    "tuple": ParserTuple,
    "str": ParserStr,
    "hash": shown_hash,
    "bytes": bytes,
    "bytearray": bytearray,
    "enumerate": checked_enumerate,
    "zip": checked_zip,
    "sorted": sorted,
    "reversed": reversed,
    "min": min,
    "max": max,
    "sum": sum,
    "any": any,
    "all": all,
    "map": map,
    "filter": filter,
    "iter": iter,
    "next": next,
    "bin": bin,
    "RecursionError": RecursionError,
    "TimeoutError": TimeoutError,
}

_INPLACE: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.iadd,
    "-=": operator.isub,
    "*=": operator.imul,
    "/=": operator.itruediv,
    "//=": operator.ifloordiv,
    "%=": shown_mod,
    "**=": operator.ipow,
    "<<=": operator.ilshift,
    ">>=": operator.irshift,
    "&=": operator.iand,
    "^=": operator.ixor,
    "|=": operator.ior,
    "@=": operator.imatmul,
}


# Every attribute name RestrictedPython's safer_getattr treats specially: those take its
# own slow path, so the fast path below decides nothing the upstream guard would not.
# The upstream guards are untyped: typed aliases keep mypy --strict meaningful here.
safer_getattr_raise: Callable[..., Any] = Guards.safer_getattr_raise
guarded_unpack_sequence: Callable[..., Any] = Guards.guarded_unpack_sequence
guarded_iter_unpack_sequence: Callable[..., Any] = Guards.guarded_iter_unpack_sequence
_SPECIAL_NAMES = frozenset(
    {"format", "format_map", "Formatter"} | _FORMATTER_UNSAFE_METHODS | INSPECT_ATTRIBUTES
)
# `type.mro()` lists a class's bases: from `tuple` and `str` (engine.nesting's and
# engine.display's stand-ins) it hands out the real builtins they guard.
REFUSED_ATTRIBUTES = frozenset({"mro"})
# Names that leave the fast path: RestrictedPython's, those engine.nesting checks, the
# exception `.args` engine.display scrubs, and those refused outright.
_SLOW_NAMES = _SPECIAL_NAMES | NESTING_ATTRIBUTES | REFUSED_ATTRIBUTES


def guarded_getattr(obj: Any, name: Any, default: Any = safer_getattr_raise) -> Any:
    """`obj.name` in a parser: RestrictedPython's `safer_getattr_raise`, in one frame.

    Parser code reads attributes all the time (about a hundred per Efento contact), and
    the upstream guard costs two Python frames each. A plain public name that no upstream
    rule mentions is read directly; the few that hand out tuples (engine.nesting) are
    checked; anything else goes through the upstream guard.
    """
    if type(name) is str and name[:1] != "_" and name not in _SLOW_NAMES:
        if default is safer_getattr_raise:
            return getattr(obj, name)
        return getattr(obj, name, default)
    if name in NESTING_ATTRIBUTES:
        found = checked_attribute(obj, name)
        if not unchecked(found):
            return shown_args(found) if name == "args" else found
    if name in REFUSED_ATTRIBUTES:
        raise AttributeError(f'"{name}" is not available to parsers')
    if default is safer_getattr_raise:
        return safer_getattr_raise(obj, name)
    return safer_getattr_raise(obj, name, default)


def guarded_unpack(it: Any, spec: dict[str, Any], getiter: Any) -> Any:
    """`a, b = it`: RestrictedPython's guard applies `_getiter_` to `it` and its nested
    targets. Ours is the identity (default_guarded_getiter), so a flat target needs
    nothing; nested targets still take the upstream guard."""
    if getiter is default_guarded_getiter and not spec["childs"]:
        return it
    return guarded_unpack_sequence(it, spec, getiter)


def guarded_iter_unpack(it: Any, spec: dict[str, Any], getiter: Any) -> Any:
    """`for a, b in it`: as guarded_unpack, for each item of a loop."""
    if getiter is default_guarded_getiter and not spec["childs"]:
        return it
    return guarded_iter_unpack_sequence(it, spec, getiter)


def _inplacevar(op: str, target: Any, value: Any) -> Any:
    return _INPLACE[op](target, value)


def _apply(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return function(*args, **kwargs)


def _builtins() -> MappingProxyType[str, Any]:
    chosen = {k: v for k, v in safe_builtins.items() if k not in _REMOVED}
    chosen.update(limited_builtins)
    chosen.update(_EXTRA_BUILTINS)
    chosen["__import__"] = guarded_import
    chosen["__build_class__"] = build_class
    chosen["repr"] = shown_repr
    return MappingProxyType(chosen)


# The helpers engine.transformer compiles text conversions and tuple displays into.
_COMPILED_HELPERS: dict[str, Callable[..., Any]] = {
    FORMAT_HELPERS[-1]: shown_format,
    FORMAT_HELPERS[ord("s")]: shown_str,
    FORMAT_HELPERS[ord("r")]: shown_repr,
    FORMAT_HELPERS[ord("a")]: shown_ascii,
    MOD_HELPER: shown_mod,
    NESTING_HELPER: checked,
}


BUILTINS = _builtins()


def fresh_globals(
    warn: Callable[[object], None], *, output: CallOutput | None = None
) -> dict[str, Any]:
    """A new globals dict for one call: nothing a previous call stored is in it; what
    the call prints goes to `output` (a new one, at the default cap, when none)."""
    if output is None:
        output = CallOutput(DEFAULT_LIMITS.max_print_chars)
    return {
        **_COMPILED_HELPERS,
        "__builtins__": dict(BUILTINS),
        "__name__": MODULE_NAME,
        "__metaclass__": type,
        "_getattr_": guarded_getattr,
        "_getitem_": default_guarded_getitem,
        "_getiter_": default_guarded_getiter,
        "_iter_unpack_sequence_": guarded_iter_unpack,
        "_unpack_sequence_": guarded_unpack,
        "_write_": full_write_guard,
        "_print_": print_factory(output),
        "_inplacevar_": _inplacevar,
        "_apply_": _apply,
        "warn": warn,
    }
