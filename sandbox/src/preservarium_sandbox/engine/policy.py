"""The restricted execution policy: the builtins and guards a parser's globals start from."""

from __future__ import annotations

import operator
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from RestrictedPython.Eval import default_guarded_getitem, default_guarded_getiter
from RestrictedPython.Guards import (
    full_write_guard,
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    safe_builtins,
    safer_getattr_raise,
)
from RestrictedPython.Limits import limited_builtins
from RestrictedPython.PrintCollector import PrintCollector

from preservarium_sandbox.engine.facades import guarded_import

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
    "tuple": tuple,
    "bytes": bytes,
    "bytearray": bytearray,
    "enumerate": enumerate,
    "zip": zip,
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
    "%=": operator.imod,
    "**=": operator.ipow,
    "<<=": operator.ilshift,
    ">>=": operator.irshift,
    "&=": operator.iand,
    "^=": operator.ixor,
    "|=": operator.ior,
    "@=": operator.imatmul,
}


def _inplacevar(op: str, target: Any, value: Any) -> Any:
    return _INPLACE[op](target, value)


def _apply(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return function(*args, **kwargs)


class CappedPrintCollector(PrintCollector):
    """print() output kept in memory up to a cap; the rest is dropped."""

    cap = 4096

    def __init__(self, _getattr_: Any = None) -> None:
        super().__init__(_getattr_)  # type: ignore[no-untyped-call]
        self.size = 0

    def write(self, text: str) -> None:
        """Keep text until the cap is reached."""
        if self.size < self.cap:
            kept = str(text)[: self.cap - self.size]
            self.size += len(kept)
            self.txt.append(kept)


def _builtins() -> MappingProxyType[str, Any]:
    chosen = {k: v for k, v in safe_builtins.items() if k not in _REMOVED}
    chosen.update(limited_builtins)
    chosen.update(_EXTRA_BUILTINS)
    chosen["__import__"] = guarded_import
    return MappingProxyType(chosen)


BUILTINS = _builtins()


def fresh_globals(warn: Callable[[object], None]) -> dict[str, Any]:
    """A new globals dict for one call: nothing a previous call stored is in it."""
    return {
        "__builtins__": dict(BUILTINS),
        "__name__": MODULE_NAME,
        "__metaclass__": type,
        "_getattr_": safer_getattr_raise,
        "_getitem_": default_guarded_getitem,
        "_getiter_": default_guarded_getiter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_write_": full_write_guard,
        "_print_": CappedPrintCollector,
        "_inplacevar_": _inplacevar,
        "_apply_": _apply,
        "warn": warn,
    }
