"""Which route template a path belongs to (`/api/v1/devices/{device_id}`), for metrics
labels and audit entries: raw paths would let clients mint label values without end.

Resolved from the app's own OpenAPI paths, so it needs nothing of the framework's
routing internals."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

OTHER = "other"
PARAMETER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True, slots=True)
class Match:
    """A path's template and the values of its parameters."""

    template: str
    params: dict[str, str]


class RouteTemplates:
    """Matches request paths to the templates `paths()` lists (read on first use)."""

    def __init__(self, paths: Callable[[], Iterable[str]]) -> None:
        self._paths = paths
        self._compiled: list[tuple[str, re.Pattern[str]]] | None = None

    def match(self, path: str) -> Match:
        """The template of `path`, or OTHER with no parameters."""
        for template, pattern in self._patterns():
            found = pattern.fullmatch(path)
            if found is not None:
                return Match(template, found.groupdict())
        return Match(OTHER, {})

    def _patterns(self) -> list[tuple[str, re.Pattern[str]]]:
        if self._compiled is None:
            # Literal segments before parameters: /parsers/test before /parsers/{type}.
            templates = sorted(set(self._paths()), key=lambda t: (t.count("{"), t))
            self._compiled = [(t, _pattern(t)) for t in templates]
        return self._compiled


def _pattern(template: str) -> re.Pattern[str]:
    parts = PARAMETER.split(template)
    regex = "".join(
        re.escape(part) if index % 2 == 0 else f"(?P<{part}>[^/]+)"
        for index, part in enumerate(parts)
    )
    return re.compile(regex)
