"""docs/settings.md against the code: the same variables, with the same defaults.

The code's variables are the fields of `Settings` (pydantic-settings, prefix
`PRESERVARIUM_`) and every `PRESERVARIUM_*` name the packages' source reads otherwise
(`os.environ.get`, a CLI option's `envvar`, or any other string naming one).
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from preservarium.settings import DATABASE_FILE, ENV_PREFIX, Settings, sqlite_url
from preservarium_gateway.config import GatewayConfig
from preservarium_sandbox.server import SandboxConfig
from pydantic_core import PydanticUndefined

from tests.repo.settings_table import DocumentedSetting, documented_settings

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / name / "src" for name in ("sdk", "gateway", "sandbox", "tools")]
VARIABLE = re.compile(r"PRESERVARIUM_[A-Z0-9_]+")
NO_DEFAULT = object()  # read with no literal default (None, or computed)
# Defaults computed at start, checked by their own tests below.
COMPUTED = {
    "PRESERVARIUM_SANDBOX_WORKERS",
    "PRESERVARIUM_METRICS_PORT",
    "PRESERVARIUM_DATA_DIR",
    "PRESERVARIUM_DATABASE_URL",
}


@dataclass(frozen=True, slots=True)
class CodeSetting:
    """A variable the code reads, with its default (NO_DEFAULT when none is literal)."""

    variable: str
    default: Any
    where: str


def settings_fields() -> Iterator[CodeSetting]:
    """The fields of Settings."""
    for name, field in Settings.model_fields.items():
        if field.default_factory is not None:
            default = field.default_factory()  # type: ignore[call-arg]
        elif field.default is PydanticUndefined or field.default is None:
            default = NO_DEFAULT
        else:
            default = field.default
        yield CodeSetting(ENV_PREFIX + name.upper(), default, "Settings")


def _literal(node: ast.expr | None) -> Any:
    if isinstance(node, ast.Constant) and node.value is not None:
        return node.value
    return NO_DEFAULT


def _read_in_call(call: ast.Call) -> tuple[str, Any] | None:
    """(variable, default) for `environ.get("X", d)`, `getenv("X", d)` or `...(d, envvar="X")`."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    first = call.args[0] if call.args else None
    named = first.value if isinstance(first, ast.Constant) else None
    if name in {"get", "getenv"} and isinstance(named, str) and VARIABLE.fullmatch(named):
        return named, _literal(call.args[1] if len(call.args) > 1 else None)
    for keyword in call.keywords:
        value = keyword.value
        if keyword.arg == "envvar" and isinstance(value, ast.Constant):
            return str(value.value), _literal(first)
    return None


def source_reads() -> Iterator[CodeSetting]:
    """Every PRESERVARIUM_* name in the packages' code, outside Settings."""
    for folder in SOURCES:
        for path in sorted(folder.rglob("*.py")):
            if "/v1/" in path.as_posix():  # generated gRPC modules
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            where = path.relative_to(ROOT).as_posix()
            in_calls: set[str] = set()
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and (found := _read_in_call(node)):
                    in_calls.add(found[0])
                    yield CodeSetting(found[0], found[1], where)
            for node in ast.walk(tree):
                text = node.value if isinstance(node, ast.Constant) else None
                if isinstance(text, str) and VARIABLE.fullmatch(text) and text not in in_calls:
                    yield CodeSetting(text, NO_DEFAULT, where)


def code_settings() -> dict[str, CodeSetting]:
    """Each variable once: Settings first (it owns the default), then other reads."""
    found: dict[str, CodeSetting] = {}
    for setting in [*settings_fields(), *source_reads()]:
        known = found.get(setting.variable)
        if known is None or (known.default is NO_DEFAULT and setting.default is not NO_DEFAULT):
            found[setting.variable] = setting
    return found


def as_text(value: Any) -> str:
    """A default as the environment would spell it."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dict):
        return ",".join(f"{key}={item}" for key, item in value.items())
    return str(value)


CODE = code_settings()
DOCUMENTED = documented_settings()


def test_the_table_is_read() -> None:
    assert len(DOCUMENTED) >= 12


def test_every_variable_the_code_reads_is_documented() -> None:
    missing = {name: CODE[name].where for name in CODE.keys() - DOCUMENTED.keys()}
    assert not missing, f"not in docs/settings.md: {missing}"


def test_nothing_documented_is_unknown_to_the_code() -> None:
    unknown = sorted(DOCUMENTED.keys() - CODE.keys())
    assert not unknown, f"docs/settings.md lists variables the code never reads: {unknown}"


@pytest.mark.parametrize("variable", sorted(DOCUMENTED.keys() & CODE.keys() - COMPUTED))
def test_documented_default_is_the_codes(variable: str) -> None:
    code, doc = CODE[variable], DOCUMENTED[variable]
    if code.default is NO_DEFAULT:
        assert doc.literal_default is None, f"{variable}: the code has no default {doc.default}"
    else:
        assert doc.literal_default == as_text(code.default), variable


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No PRESERVARIUM_* variable from the caller's environment."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("clean_environment")
def test_workers_default_to_the_cpu_count() -> None:
    doc = DOCUMENTED["PRESERVARIUM_SANDBOX_WORKERS"]
    assert doc.default == "the number of CPUs"
    assert Settings().sandbox_workers == (os.cpu_count() or 1)


@pytest.mark.usefixtures("clean_environment")
def test_metrics_port_defaults_per_service() -> None:
    doc: DocumentedSetting = DOCUMENTED["PRESERVARIUM_METRICS_PORT"]
    ports = dict(re.findall(r"(\w+) `(\d+)`", doc.default))
    settings = Settings()
    assert ports == {
        "gateway": str(GatewayConfig.from_settings(settings).metrics_port),
        "sandbox": str(SandboxConfig.from_settings(settings).metrics_port),
    }


@pytest.mark.usefixtures("clean_environment")
def test_the_data_dir_defaults_per_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    doc = DOCUMENTED["PRESERVARIUM_DATA_DIR"].default
    assert "`$XDG_DATA_HOME/preservarium`" in doc and "`~/.local/share/preservarium`" in doc
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert Settings().data_dir == tmp_path / "preservarium"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert Settings().data_dir == tmp_path / ".local" / "share" / "preservarium"


@pytest.mark.usefixtures("clean_environment")
def test_the_database_defaults_to_sqlite_in_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    doc = DOCUMENTED["PRESERVARIUM_DATABASE_URL"].default
    assert f"`{DATABASE_FILE}`" in doc and "`PRESERVARIUM_DATA_DIR`" in doc
    monkeypatch.setenv("PRESERVARIUM_DATA_DIR", str(tmp_path))
    assert Settings().database_url == sqlite_url(tmp_path / DATABASE_FILE)
