"""The settings table of docs/settings.md, read as data for the tests that check it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SETTINGS_DOC = Path(__file__).resolve().parents[2] / "docs" / "settings.md"
ROW = re.compile(r"^\| `(PRESERVARIUM_[A-Z0-9_]+)` \| (.*?) \| (.*?) \| (.*) \|$", re.MULTILINE)
LITERAL = re.compile(r"`([^`]*)`")
EMPTY = "empty"


@dataclass(frozen=True, slots=True)
class DocumentedSetting:
    """One row: the variable, its default cell as written, and the services that read it."""

    variable: str
    default: str
    services: frozenset[str]

    @property
    def literal_default(self) -> str | None:
        """The default when the cell is one literal (`value`, or `empty` for ""), else None."""
        if self.default == EMPTY:
            return ""
        found = LITERAL.fullmatch(self.default)
        return found.group(1) if found else None


def documented_settings(path: Path = SETTINGS_DOC) -> dict[str, DocumentedSetting]:
    """Every row of the settings table, by variable; a variable listed twice is an error."""
    rows: dict[str, DocumentedSetting] = {}
    for variable, default, services, _meaning in ROW.findall(path.read_text(encoding="utf-8")):
        assert variable not in rows, f"{variable} is in {path.name} twice"
        names = frozenset(name.strip() for name in services.split(","))
        rows[variable] = DocumentedSetting(variable, default.strip(), names)
    return rows
