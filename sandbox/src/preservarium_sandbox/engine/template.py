"""A parser module's namespace, executed once per version and copied for every call.

Executing the whole module for every call costs more than most calls themselves (the
Efento parser is a thousand lines of definitions). The first call of a version executes
it into a template; every later call gets a copy, made by our own copier, that shares
nothing mutable with the template: each function is rebuilt on the call's new globals
(closure cells, defaults and attributes copied), each class rebuilt with copies of its
attributes, each container copied. What a call changes dies with the call.

The copier runs no parser code: it knows a closed set of exact types (plain data, the
module's own functions and classes, the objects the host hands to every call) and calls
only builtin constructors on them. A module whose namespace holds anything else (an
instance, a generator, a class with its own metaclass) is executed for every call, as
before: what cannot be copied without running parser code is never copied. A module that
printed or warned while loading is executed for every call too, so that every call
reports what its module said.
"""

from __future__ import annotations

import datetime
import gc
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import CellType, CodeType, FunctionType
from typing import Any

from preservarium_sandbox.engine.display import address_free_repr
from preservarium_sandbox.engine.facades import VETTED_MODULES
from preservarium_sandbox.engine.policy import BUILTINS, MODULE_NAME, fresh_globals
from preservarium_sandbox.limits import MAX_TEMPLATE_BYTES, TEMPLATE_MAX_DEPTH, TEMPLATE_MAX_NODES

# What the plan pins for each template object it learns (CopyPlan.kept, .flat): the id,
# an int, and its share of a set's table.
_LEARNED_BYTES = sys.getsizeof(2**63) + 48

# A weak reference and its slot in a base's __subclasses__ dict.
_WEAKREF_BYTES = 160

# Exact types whose values cannot change and hold nothing a parser defined: shared.
_IMMUTABLE: frozenset[type] = frozenset(
    {
        type(None),
        type(Ellipsis),
        bool,
        int,
        float,
        complex,
        str,
        bytes,
        range,
        re.Pattern,
        datetime.date,
        datetime.timedelta,
        datetime.timezone,
    }
)
# Immutable too, as long as their tzinfo is None or a datetime.timezone.
_ZONED: frozenset[type] = frozenset({datetime.datetime, datetime.time})
# Class-dict entries type() makes for the shell itself.
_SHELL_ENTRIES = frozenset({"__module__", "__qualname__", "__doc__", "__dict__", "__weakref__"})
# Class-dict entries the copier refuses: they act when a class is created.
_CREATION_HOOKS = frozenset({"__slots__", "__init_subclass__", "__set_name__", "__classcell__"})


class Uncopyable(Exception):
    """The template holds something the copier does not copy: re-execute instead."""


def _host_objects() -> dict[int, object]:
    """What every call's globals hold before its module runs, and what vetted modules hand
    out: the same objects whether a module is executed or copied, so shared."""
    found: list[object] = [object, address_free_repr]
    base = fresh_globals(lambda message: None)
    found.extend(
        value for key, value in base.items() if key not in ("warn", "_print_", "__builtins__")
    )
    found.extend(BUILTINS.values())
    for facade in VETTED_MODULES.values():
        found.append(facade)
        found.extend(getattr(facade, name) for name in vars(type(facade)) if name[:1] != "_")
    return {id(item): item for item in found}


_HOST = _host_objects()


@dataclass
class CopyPlan:
    """What the first copy of a template learned about its objects (by id: the template
    keeps them alive and never changes)."""

    learning: bool = True
    size: int = 0
    kept: set[int] = field(default_factory=set)
    flat: set[int] = field(default_factory=set)
    # Once learned, the template's names by how they are copied (ModuleImage._sort).
    shared: dict[str, Any] = field(default_factory=dict)
    shallow: list[tuple[str, Any]] = field(default_factory=list)
    plain_functions: list[tuple[str, FunctionType]] = field(default_factory=list)
    others: list[str] = field(default_factory=list)


class _Copier:
    """One copy of a template into a call's globals; memoized, so aliasing and cycles
    come out as they went in.

    The first copy of a template learns, into `plan`, which of its tuples and frozensets
    hold nothing copied (shared from then on) and which lists, dicts and sets hold nothing
    copied (copied by the builtin shallow copy from then on): most of a parser's tables.
    """

    def __init__(self, source: dict[str, Any], target: dict[str, Any], plan: CopyPlan) -> None:
        self.source = source
        self.target = target
        self.plan = plan
        self.kept = plan.kept
        self.flat = plan.flat
        self.memo: dict[int, Any] = {}
        self.nodes = 0

    def copy(self, value: Any, depth: int = 0) -> Any:
        kind = type(value)
        if kind in _IMMUTABLE or id(value) in self.kept:
            if self.plan.learning:
                self._count(value)
            return value
        if id(value) in self.memo:
            return self.memo[id(value)]
        if id(value) in _HOST:
            return value
        if depth > TEMPLATE_MAX_DEPTH:
            raise Uncopyable("nested too deep")
        self.nodes += 1
        if self.nodes > TEMPLATE_MAX_NODES:
            raise Uncopyable("too many objects")
        copier = _COPIERS.get(kind)
        if copier is None:
            if kind in _ZONED and type(value.tzinfo) in (type(None), datetime.timezone):
                return value
            raise Uncopyable(kind.__name__)
        if self.plan.learning:
            self._count(value)
        return copier(self, value, depth + 1)

    def _count(self, value: object) -> None:
        """Add a template object's size (an exact builtin type's: no parser code runs)."""
        self._count_bytes(sys.getsizeof(value))

    def _count_bytes(self, size: int) -> None:
        self.plan.size += size
        if self.plan.size > MAX_TEMPLATE_BYTES:
            raise Uncopyable("too large to keep")

    def _list(self, value: list[Any], depth: int) -> list[Any]:
        if id(value) in self.flat:
            made = value.copy()
            self.memo[id(value)] = made
            return made
        made = []
        self.memo[id(value)] = made
        made.extend(self.copy(item, depth) for item in value)
        self._learn(self.flat, value, _same(made, value))
        return made

    def _dict(self, value: dict[Any, Any], depth: int) -> dict[Any, Any]:
        if id(value) in self.flat:
            made = value.copy()
            self.memo[id(value)] = made
            return made
        made = {}
        self.memo[id(value)] = made
        for key, item in value.items():
            made[self.copy(key, depth)] = self.copy(item, depth)
        same = _same(made, value) and _same(made.values(), value.values())
        self._learn(self.flat, value, same)
        return made

    def _set(self, value: set[Any], depth: int) -> set[Any]:
        if id(value) in self.flat:
            made = value.copy()
            self.memo[id(value)] = made
            return made
        made = set()
        self.memo[id(value)] = made
        items = [self.copy(item, depth) for item in value]
        made.update(items)
        self._learn(self.flat, value, _same(items, value))
        return made

    def _learn(self, into: set[int], value: object, same: bool) -> None:
        if self.plan.learning and same:
            into.add(id(value))
            self._count_bytes(_LEARNED_BYTES)

    def _bytearray(self, value: bytearray, depth: int) -> bytearray:
        made = bytearray(value)
        self.memo[id(value)] = made
        return made

    def _tuple(self, value: tuple[Any, ...], depth: int) -> tuple[Any, ...]:
        items = [self.copy(item, depth) for item in value]
        if id(value) in self.memo:  # reached again through its own items
            return self.memo[id(value)]  # type: ignore[no-any-return]
        same = _same(items, value)
        made = value if same else tuple(items)
        self.memo[id(value)] = made
        self._learn(self.kept, value, same)
        return made

    def _frozenset(self, value: frozenset[Any], depth: int) -> frozenset[Any]:
        items = [self.copy(item, depth) for item in value]
        same = _same(items, value)
        made = value if same else frozenset(items)
        self.memo[id(value)] = made
        self._learn(self.kept, value, same)
        return made

    def _function(self, value: FunctionType, depth: int) -> FunctionType:
        if value.__globals__ is not self.source:
            raise Uncopyable("a function of another namespace")
        closure = None
        if value.__closure__ is not None:
            closure = tuple(self._cell_shell(cell) for cell in value.__closure__)
        if self.plan.learning:
            # What the template pins besides what copy() counts: the closure and its
            # cells, and the empty annotations dict reading __annotations__ leaves behind.
            self._count(value.__closure__)
            self._count_bytes(sum(sys.getsizeof(cell) for cell in value.__closure__ or ()))
            if not value.__annotations__:
                self._count(value.__annotations__)
        made = FunctionType(value.__code__, self.target, value.__name__, None, closure)
        self.memo[id(value)] = made
        if value.__closure__ is not None:
            for cell in value.__closure__:
                self._cell_fill(cell, depth)
        made.__defaults__ = self.copy(value.__defaults__, depth)
        made.__kwdefaults__ = self.copy(value.__kwdefaults__, depth)
        made.__qualname__ = value.__qualname__
        made.__module__ = value.__module__
        made.__doc__ = value.__doc__
        if value.__annotations__:
            made.__annotations__ = self.copy(value.__annotations__, depth)
        if value.__dict__:
            made.__dict__.update(self.copy(value.__dict__, depth))
        return made

    def _cell_shell(self, cell: CellType) -> CellType:
        if id(cell) not in self.memo:
            self.memo[id(cell)] = CellType()
        return self.memo[id(cell)]  # type: ignore[no-any-return]

    def _cell_fill(self, cell: CellType, depth: int) -> None:
        made = self.memo[id(cell)]
        if _is_empty(cell) or not _is_empty(made):  # nothing to copy, or copied already
            return
        made.cell_contents = self.copy(cell.cell_contents, depth)

    def _class(self, value: type, depth: int) -> type:
        entries = value.__dict__
        if value.__module__ != MODULE_NAME or _CREATION_HOOKS & entries.keys():
            raise Uncopyable("a class not copied safely")
        bases = tuple(self.copy(base, depth) for base in value.__bases__)
        doc = entries.get("__doc__")
        if type(doc) not in (str, type(None)):  # type.__doc__ would call its __get__
            raise Uncopyable("a class whose __doc__ is not text")
        shell = {"__module__": MODULE_NAME, "__qualname__": value.__qualname__, "__doc__": doc}
        made = type(value.__name__, bases, shell)
        self.memo[id(value)] = made
        if self.plan.learning:
            # What the template pins besides what copy() counts: the class's own dict
            # (behind the mappingproxy), its MRO, the shell entries and the weak
            # references its bases keep to it.
            (own,) = gc.get_referents(entries)
            self._count(own)
            self._count(value.__mro__)
            self._count_bytes(
                sum(sys.getsizeof(entries[name]) for name in _SHELL_ENTRIES & entries.keys())
            )
            self._count_bytes(len(value.__bases__) * _WEAKREF_BYTES)
        for name, item in entries.items():
            if name not in _SHELL_ENTRIES:
                type.__setattr__(made, name, self.copy(item, depth))
        return made


def _same(made: Iterable[Any], original: Iterable[Any]) -> bool:
    """True when a copy's items are the original's own objects, in the same order."""
    return all(new is old for new, old in zip(made, original, strict=True))


def _plain_function(value: Any, template: dict[str, Any], plan: CopyPlan) -> bool:
    """A module function that FunctionType(code, globals, name, defaults) rebuilds whole:
    no closure, no keyword defaults, annotations or attributes, defaults shared."""
    return (
        type(value) is FunctionType
        and value.__globals__ is template
        and value.__closure__ is None
        and (value.__defaults__ is None or id(value.__defaults__) in plan.kept)
        and value.__kwdefaults__ is None
        and not value.__annotations__
        and not value.__dict__
        and value.__qualname__ == value.__code__.co_qualname
    )


def _is_empty(cell: CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - read only to see whether it is filled
    except ValueError:
        return True
    return False


_COPIERS: dict[type, Callable[[_Copier, Any, int], Any]] = {
    list: _Copier._list,
    dict: _Copier._dict,
    set: _Copier._set,
    bytearray: _Copier._bytearray,
    tuple: _Copier._tuple,
    frozenset: _Copier._frozenset,
    FunctionType: _Copier._function,
    type: _Copier._class,
}


class ModuleImage:
    """How the calls of one parser version get their module namespace.

    Undecided until a first call loads the module completely; then either `copied`
    (a template, copied for each call) or `executed` (the module, run for each call).
    """

    def __init__(self, *, copies: bool = True) -> None:
        """`copies=False` executes the module for every call from the start (what every
        version did before templates; bench.globals_cost measures one against the other)."""
        self._template: dict[str, Any] | None = None
        self._names: tuple[str, ...] = ()
        self._removed: tuple[str, ...] = ()
        self._plan = CopyPlan()
        self._executes = not copies

    @property
    def mode(self) -> str:
        """ "undecided", "copied" or "executed"."""
        if self._template is not None:
            return "copied"
        return "executed" if self._executes else "undecided"

    def load(
        self, code: CodeType, fresh: Callable[[], dict[str, Any]], quiet: Callable[[], bool]
    ) -> dict[str, Any]:
        """The module namespace for one call, built on `fresh()` (the call's globals).

        `quiet()` says whether loading the module printed or warned nothing. Runs parser
        code (the module's) only when executing; raises what that code raises.
        """
        if self._template is not None:
            return self._copy(self._template, fresh())
        namespace = fresh()
        if self._executes:
            exec(code, namespace)
            return namespace
        before = dict(namespace)
        exec(code, namespace)
        if not quiet():
            self._executes = True
            return namespace
        self._names = tuple(k for k, v in namespace.items() if before.get(k, self) is not v)
        self._removed = tuple(k for k in before if k not in namespace)
        self._plan = CopyPlan()  # ids learned by an earlier trial may name new objects now
        try:
            copied = self._copy(namespace, fresh())
        except Uncopyable:
            self._executes = True
            return namespace
        # The deadline's exception can land anywhere: the template is kept only once its
        # plan is complete, or this version would stay half-learned for good.
        self._sort(namespace)
        self._template = namespace
        return copied

    def _sort(self, template: dict[str, Any]) -> None:
        """Sort the names for the copies to come: shared as they are, copied by the
        builtin shallow copy, plain functions (rebuilt in one call), and the others."""
        plan = self._plan
        for name in self._names:
            value = template[name]
            if type(value) in _IMMUTABLE or id(value) in plan.kept or id(value) in _HOST:
                plan.shared[name] = value
            elif type(value) in (list, dict, set) and id(value) in plan.flat:
                plan.shallow.append((name, value))
            elif _plain_function(value, template, plan):
                plan.plain_functions.append((name, value))
            else:
                plan.others.append(name)
        plan.learning = False

    def _copy(self, template: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
        plan = self._plan
        copier = _Copier(template, target, plan)
        if plan.learning:
            for name in self._names:
                target[name] = copier.copy(template[name])
        else:
            memo = copier.memo  # shared with the copier: aliases stay aliases
            target.update(plan.shared)
            for name, value in plan.shallow:
                made = memo.get(id(value))
                if made is None:
                    made = memo[id(value)] = value.copy()
                target[name] = made
            for name, function in plan.plain_functions:
                made = memo.get(id(function))
                if made is None:
                    made = memo[id(function)] = FunctionType(
                        function.__code__, target, function.__name__, function.__defaults__
                    )
                target[name] = made
            for name in plan.others:
                target[name] = copier.copy(template[name])
        for name in self._removed:
            target.pop(name, None)
        return target

    def release(self) -> None:
        """Let go of the template (its functions and namespace form cycles: break them)."""
        if self._template is not None:
            self._template.clear()
        self._template = None
        self._plan = CopyPlan()
