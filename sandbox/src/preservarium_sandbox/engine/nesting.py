"""A bound on how deep parser code can nest tuples, where it builds them.

CPython 3.11 hashes a tuple by recursing in C without the interpreter's recursion check:
`t = (t,)` a million times, then `hash(t)` (or `t` as a dict key or set member),
overflows the C stack and kills the worker with SIGSEGV. repr, ==, ordering and
json.dumps of deep lists, dicts and tuples do check, and raise RecursionError.

So every tuple a parser builds with a display (`(a, b)`, `return a, b`, `d[a, b]`) or
receives as `*args` is checked here (engine.transformer inserts the calls), and so are
those of `tuple(...)` (the builtin parsers get is `ParserTuple`), `zip`, `enumerate`,
`dict.items()`, `dict.popitem()`, `re.Match.groups()` and an exception's `.args`
(engine.policy's getattr guard; it refuses `mro`, which would hand out the real tuple):
one nested deeper than MAX_TUPLE_DEPTH raises RecursionError, which the parser sees as
any other. The walk is depth-first and gives up (accepting) after TUPLE_WALK_BUDGET
tuples: a structure built wide on purpose to exhaust it costs its builder
TUPLE_WALK_BUDGET steps per level, so the depth that overflows the C stack (over 100,000
levels) stays out of reach within a call's time. Both limits live in limits.py.
"""

from __future__ import annotations

import re
from typing import Any

from preservarium_sandbox.limits import MAX_TUPLE_DEPTH, TUPLE_WALK_BUDGET


class NestingError(RecursionError):
    """Tuples nested deeper than MAX_TUPLE_DEPTH."""


def _walk(root: tuple[Any, ...]) -> None:
    stack: list[tuple[tuple[Any, ...], int]] = [(root, 1)]
    visited = 0
    while stack:
        node, depth = stack.pop()
        visited += 1
        if depth > MAX_TUPLE_DEPTH:
            raise NestingError(f"tuples nested deeper than {MAX_TUPLE_DEPTH} levels")
        if visited > TUPLE_WALK_BUDGET:
            return
        for item in node:
            if isinstance(item, tuple) and item:
                stack.append((item, depth + 1))


def checked(value: tuple[Any, ...]) -> tuple[Any, ...]:
    """`value` itself, once it is known not to nest tuples deeper than MAX_TUPLE_DEPTH."""
    for item in value:
        if isinstance(item, tuple) and item:
            _walk(value)
            break
    return value


class _TupleType(type):
    """`isinstance(x, tuple)` in parser code keeps meaning what it means in Python."""

    def __instancecheck__(cls, instance: Any) -> bool:
        return isinstance(instance, tuple)

    def __subclasscheck__(cls, subclass: type) -> bool:
        return issubclass(subclass, tuple)


class ParserTuple(tuple, metaclass=_TupleType):  # type: ignore[type-arg]
    """The `tuple` builtin of parser code: `tuple(iterable)` checked, a real tuple made."""

    def __new__(cls, iterable: Any = ()) -> Any:
        made = tuple(iterable) if cls is ParserTuple else super().__new__(cls, iterable)
        return checked(made)


ParserTuple.__name__ = ParserTuple.__qualname__ = "tuple"
ParserTuple.__module__ = "builtins"


def _check_members(values: Any) -> None:
    for value in values:
        if isinstance(value, tuple) and value:
            checked(value)


def checked_zip(*iterables: Any, strict: bool = False) -> Any:
    """The `zip` builtin of parser code: each tuple it yields checked."""
    return map(checked, zip(*iterables, strict=strict))


def checked_enumerate(iterable: Any, start: int = 0) -> Any:
    """The `enumerate` builtin of parser code: each pair it yields checked."""
    return map(checked, enumerate(iterable, start))


# Attributes that hand parser code a tuple made of its own objects: dict.items() and
# dict.popitem() (pairs), an exception's .args, re.Match.groups(default) (the default
# fills each group that did not match). Read through `checked_attribute`.
NESTING_ATTRIBUTES = frozenset({"items", "popitem", "args", "groups"})
_NOT_CHECKED = object()


def checked_attribute(obj: Any, name: str) -> Any:
    """`obj.name` for a name in NESTING_ATTRIBUTES, its tuples checked; or _NOT_CHECKED."""
    if isinstance(obj, dict):
        mapping = obj
        if name == "items":

            def items() -> Any:
                _check_members(mapping.keys())
                _check_members(mapping.values())
                return mapping.items()

            return items
        if name == "popitem":
            return lambda: checked(mapping.popitem())
    if name == "args" and isinstance(obj, BaseException):
        return checked(obj.args)
    if name == "groups" and isinstance(obj, re.Match):
        match = obj
        return lambda *args, **kwargs: checked(match.groups(*args, **kwargs))
    return _NOT_CHECKED


def unchecked(value: Any) -> bool:
    """True when checked_attribute had nothing to say about the attribute."""
    return value is _NOT_CHECKED
