"""What parser code sees when it turns an object into text: never a heap address.

CPython's default repr (functions, generators, iterators, bound built-in methods,
instances without a `__repr__`) prints ` at 0x7f...`, and an address handed to a parser
defeats ASLR for whoever exploits the next memory bug. Parser code reaches text through
`repr()`, `str()`, f-strings, `%` formatting and `print()`: the compiler routes each of
those through the functions below (engine.transformer), and parser classes get a
`__repr__` without an address when they are built (`build_class`).

Plain values (text, numbers, dates) are converted as Python does, untouched: only text
made from other objects is scrubbed, so a parser's own data is never rewritten.
"""

from __future__ import annotations

import builtins
import datetime
import re
from typing import Any

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
# Values whose text holds nothing but the value itself (subclasses included: a parser
# cannot define `__repr__` or `__str__`, dunder names are refused by the compiler).
_PLAIN = (str, bytes, bytearray, int, float, complex, datetime.date, datetime.time,
          datetime.timedelta, datetime.tzinfo)  # fmt: skip
_build_class: Any = builtins.__build_class__
_OBJECT_REPR: Any = object.__repr__


# Values whose hash is computed from what they hold. Anything else (functions, classes,
# instances, None and Ellipsis in 3.11) hashes by its address.
_HASHED_BY_VALUE = (str, bytes, int, float, complex, datetime.date, datetime.time,
                    datetime.timedelta, datetime.timezone)  # fmt: skip


def scrub(text: str) -> str:
    """`text` without the ` at 0x...` of CPython's default reprs."""
    return _ADDRESS.sub("", text) if " at 0x" in text else text


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, _PLAIN)


def shown_repr(value: Any) -> str:
    """`repr(value)`, with no heap address in it."""
    text = repr(value)
    return text if _plain(value) else scrub(text)


def shown_str(value: Any) -> str:
    """`str(value)`, with no heap address in it."""
    text = str(value)
    return text if _plain(value) else scrub(text)


def shown_ascii(value: Any) -> str:
    """`ascii(value)`, with no heap address in it."""
    text = ascii(value)
    return text if _plain(value) else scrub(text)


def shown_format(value: Any, spec: str = "") -> str:
    """`format(value, spec)` (an f-string field without conversion), with no address."""
    text = format(value, spec)
    return text if _plain(value) else scrub(text)


class _Shown:
    """An argument of `%` formatting that is not a plain value: shown without address."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return shown_repr(self.value)

    def __str__(self) -> str:
        return shown_str(self.value)


def _shown_argument(value: Any) -> Any:
    return value if _plain(value) else _Shown(value)


def shown_mod(left: Any, right: Any) -> Any:
    """`left % right`: for text formatting, its non-plain arguments shown without address.

    Numbers take the plain operator; a tuple's items and a mapping's values are wrapped
    one by one, so `%d` of a plain item still works.
    """
    if not isinstance(left, str | bytes):
        return left % right
    if isinstance(right, tuple):
        return left % tuple(_shown_argument(item) for item in right)
    if isinstance(right, dict):
        return left % {key: _shown_argument(item) for key, item in right.items()}
    return left % _shown_argument(right)


def address_free_repr(self: object) -> str:
    """The `__repr__` build_class gives a parser's class: its name, no address."""
    kind = type(self)
    return f"<{kind.__module__}.{kind.__qualname__} object>"


def build_class(function: Any, name: str, *bases: Any, **keywords: Any) -> Any:
    """`__build_class__` for parser code: a class whose instances repr without an address.

    Only a class that would inherit `object.__repr__` is changed; an exception or a
    container subclass keeps the repr of its base.
    """
    made = _build_class(function, name, *bases, **keywords)
    if isinstance(made, type) and getattr(made, "__repr__", None) is _OBJECT_REPR:
        type.__setattr__(made, "__repr__", address_free_repr)
    return made


def shown_args(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """An exception's `.args`, its text without address: C code formats objects into the
    messages it raises (`list.index` says `<function f at 0x...> is not in list`)."""
    if not any(type(item) is str and " at 0x" in item for item in args):
        return args
    return tuple(scrub(item) if type(item) is str else item for item in args)


def shown_hash(value: Any) -> int:
    """`hash(value)` for a value hashed by what it holds; TypeError for one hashed by its
    address (which `hash` would hand out: `hash(f) == id(f) >> 4`, rotated)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _HASHED_BY_VALUE):
            continue
        if isinstance(item, tuple | frozenset):
            stack.extend(item)
            continue
        raise TypeError(f"hash() of {type(item).__name__} is not available to parsers")
    return hash(value)


class _StrType(type):
    """`isinstance(x, str)` in parser code keeps meaning what it means in Python."""

    def __instancecheck__(cls, instance: Any) -> bool:
        return isinstance(instance, str)

    def __subclasscheck__(cls, subclass: type) -> bool:
        return issubclass(subclass, str)


class ParserStr(str, metaclass=_StrType):
    """The `str` builtin of parser code: `str(x)` shows no address, however it is called.

    The compiler rewrites a direct `str(x)`; this covers `str` passed as a value
    (`map(str, items)`) and a parser's own str subclasses. `str(b, encoding)` and the
    methods (`str.join`, ...) are those of `str`.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and not kwargs:
            args = (shown_str(args[0]),)
        if cls is ParserStr:
            return str(*args, **kwargs)
        return super().__new__(cls, *args, **kwargs)


ParserStr.__name__ = ParserStr.__qualname__ = "str"
ParserStr.__module__ = "builtins"
