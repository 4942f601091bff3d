"""compose.yaml, loaded as `docker compose` reads it (anchors, merge keys, ${VAR} forms)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def raw() -> dict[str, Any]:
    """The file as YAML, before interpolation."""
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def interpolate(value: Any, variables: dict[str, str]) -> Any:
    """Replace ${VAR}, ${VAR:-default} and ${VAR:?error} in every string, as Compose does."""
    if isinstance(value, dict):
        return {key: interpolate(item, variables) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, variables) for item in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        present = variables.get(name)
        if op in (":?", "?") and not present:
            raise KeyError(f"{name}: {arg}")
        if op in (":-", "-") and not present:
            return str(arg)
        return present or ""

    return VARIABLE.sub(one, value)


def load(variables: dict[str, str]) -> dict[str, Any]:
    """The file with `variables` as the environment Compose interpolates from."""
    loaded = interpolate(raw(), variables)
    assert isinstance(loaded, dict)
    return loaded


def service(name: str, variables: dict[str, str]) -> dict[str, Any]:
    """One service of the interpolated file."""
    services = load(variables)["services"]
    assert name in services, f"no service {name!r} in compose.yaml"
    found = services[name]
    assert isinstance(found, dict)
    return found


def environment(definition: dict[str, Any]) -> dict[str, str]:
    """A service's `environment`, map or list form, as strings."""
    env = definition.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(key): str(value) for key, value in env.items()}
