"""The restricted policy itself: builtins, vetted imports, facades (unit level, no worker)."""

from __future__ import annotations

from typing import Any

import pytest
from preservarium_sandbox.engine.facades import (
    ALLOWED_IMPORTS,
    VETTED_MODULES,
    ImportDenied,
    VettedModule,
    guarded_import,
)
from preservarium_sandbox.engine.policy import (
    BUILTINS,
    fresh_globals,
    guarded_getattr,
    guarded_iter_unpack,
    guarded_unpack,
)
from RestrictedPython.compile import compile_restricted
from RestrictedPython.Eval import default_guarded_getiter
from RestrictedPython.Guards import safer_getattr_raise
from RestrictedPython.transformer import INSPECT_ATTRIBUTES


def test_vetted_list_is_exactly_the_contract() -> None:
    assert {
        "math", "struct", "base64", "binascii", "json", "datetime", "re", "protowire",
    } == ALLOWED_IMPORTS  # fmt: skip


@pytest.mark.parametrize("name", ["os", "sys", "os.path", "json.decoder", "importlib", "string"])
def test_the_runtime_importer_refuses_everything_else(name: str) -> None:
    with pytest.raises(ImportDenied):
        guarded_import(name)


def test_relative_imports_are_refused() -> None:
    with pytest.raises(ImportDenied):
        guarded_import("json", level=1)


@pytest.mark.parametrize("name", sorted(ALLOWED_IMPORTS))
def test_facades_are_not_modules_and_are_read_only(name: str) -> None:
    facade = VETTED_MODULES[name]
    assert isinstance(facade, VettedModule)
    assert not any(n.startswith("_") for n in vars(type(facade)) if not n.startswith("__"))
    with pytest.raises(AttributeError):
        facade.anything = 1
    for member in (n for n in dir(facade) if not n.startswith("_")):
        value = getattr(facade, member)
        assert type(value).__name__ != "module", f"{name}.{member} is a module"


def test_builtins_hand_out_no_module_and_no_escape_hatch() -> None:
    for name in ("string", "random", "math", "whrandom", "id", "open", "eval", "exec",
                 "compile", "getattr", "globals", "vars", "input", "type", "object"):  # fmt: skip
        assert name not in BUILTINS, name
    assert all(type(value).__name__ != "module" for value in BUILTINS.values())


def test_every_call_gets_its_own_globals() -> None:
    first, second = fresh_globals(print), fresh_globals(print)
    assert first is not second and first["__builtins__"] is not second["__builtins__"]


def _generator() -> Any:
    yield 1


class _Plain:
    value = 7


GETATTR_CASES: list[tuple[Any, Any]] = [
    ("text", "upper"), ("text", "format"), ("text", "format_map"), (str, "format"),
    ("text", "_private"), ("text", "__class__"), (_Plain(), "value"), (_Plain(), "missing"),
    (_generator(), "gi_frame"), (_generator(), "gi_code"), (_generator(), "send"),
    ("text", 42), ("text", b"upper"), ([], "append"), ({}, "items"),
] + [(_generator(), name) for name in sorted(INSPECT_ATTRIBUTES)]  # fmt: skip


def _outcome(function: Any, *args: Any) -> Any:
    try:
        value = function(*args)
    except Exception as exc:  # the kind of refusal is what must match
        return type(exc)
    return value if not callable(value) else getattr(value, "__name__", "callable")


@pytest.mark.parametrize(("obj", "name"), GETATTR_CASES)
def test_the_fast_getattr_decides_exactly_as_restrictedpython(obj: Any, name: Any) -> None:
    assert _outcome(guarded_getattr, obj, name) == _outcome(safer_getattr_raise, obj, name)
    assert _outcome(guarded_getattr, obj, name, "dflt") == _outcome(
        safer_getattr_raise, obj, name, "dflt"
    )


def test_the_fast_getattr_refuses_what_escapes_need() -> None:
    with pytest.raises(AttributeError):
        guarded_getattr(_generator(), "gi_frame")
    with pytest.raises(NotImplementedError):
        guarded_getattr("{0.__class__}", "format")
    with pytest.raises(AttributeError):
        guarded_getattr("", "__class__")
    with pytest.raises(TypeError):
        guarded_getattr("", 1)


UNPACKING = """
a, b = pair
(c, (d, e)) = nested
out = [x * y for x, y in pairs]
deep = [p + q + r for p, (q, r) in nested_pairs]
for k, v in pairs:
    out.append(k - v)
"""


def test_unpacking_through_the_fast_guards_matches_plain_python() -> None:
    code = compile_restricted(UNPACKING, "<parser>", "exec")
    namespace = fresh_globals(print)
    namespace.update(pair=(1, 2), nested=[3, (4, 5)], pairs=[(2, 3), (4, 5)],
                     nested_pairs=[(1, (2, 3))])  # fmt: skip
    exec(code, namespace)
    assert (namespace["a"], namespace["b"]) == (1, 2)
    assert (namespace["c"], namespace["d"], namespace["e"]) == (3, 4, 5)
    assert namespace["out"] == [6, 20, -1, -1] and namespace["deep"] == [6]


def test_the_unpack_guards_defer_to_restrictedpython_for_any_other_getiter() -> None:
    seen: list[Any] = []

    def getiter(value: Any) -> Any:
        seen.append(value)
        return iter(value)

    flat = {"min_len": 2, "childs": ()}
    assert guarded_unpack((1, 2), flat, default_guarded_getiter) == (1, 2)
    assert guarded_unpack((1, 2), flat, getiter) == [1, 2] and seen == [(1, 2)]
    assert list(guarded_iter_unpack([(1, 2)], flat, getiter)) == [[1, 2]]
