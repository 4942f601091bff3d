"""The restricted policy itself: builtins, vetted imports, facades (unit level, no worker)."""

from __future__ import annotations

import pytest
from preservarium_sandbox.engine.facades import (
    ALLOWED_IMPORTS,
    VETTED_MODULES,
    ImportDenied,
    VettedModule,
    guarded_import,
)
from preservarium_sandbox.engine.policy import BUILTINS, fresh_globals


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
        facade.anything = 1  # type: ignore[attr-defined]
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
