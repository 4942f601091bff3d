"""Rendering the services' JSON log lines compactly for a terminal."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# Fields every line has, or that the prefix already says.
_HIDDEN = frozenset({"ts", "level", "logger", "msg", "exc"})


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line of a child's output, as it will be shown."""

    level: str | None
    text: str
    detail: tuple[str, ...] = ()


def render(line: str) -> LogLine:
    """A JSON log line as `msg key=value ...` with its level; any other line as it is."""
    entry = _json_object(line)
    if entry is None or "msg" not in entry:
        return LogLine(None, line)
    extras = " ".join(
        f"{key}={_value(value)}" for key, value in entry.items() if key not in _HIDDEN
    )
    text = f"{entry['msg']} {extras}".rstrip()
    exc = entry.get("exc")
    detail = tuple(str(exc).splitlines()) if exc else ()
    level = entry.get("level")
    return LogLine(str(level) if level is not None else None, text, detail)


def _json_object(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _value(value: Any) -> str:
    if isinstance(value, str) and value and " " not in value:
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
