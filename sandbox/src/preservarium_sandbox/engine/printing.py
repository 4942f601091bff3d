"""`print()` for parser code: text kept in memory up to the limits' cap, nothing reachable.

RestrictedPython turns `print(...)` into `_print._call_print(...)` on an object made by
`_print_` at the top of each function, and `printed` into `_print()`. Its own collector
hands `file=` to the real print and lets the real print call `flush()` on itself, so an
AttributeError leaks the collector (`.obj`) and its unbounded list. This one formats the
text itself, touches no object but the arguments, and holds its parts privately.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from preservarium_sandbox.engine.display import shown_str


class PrintBuffer:
    """The text a parser's function printed, up to `room` characters."""

    __slots__ = ("_parts", "_room")

    def __init__(self, room: int) -> None:
        self._parts: list[str] = []
        self._room = room

    def _call_print(
        self, *objects: Any, sep: Any = " ", end: Any = "\n", file: Any = None, flush: Any = False
    ) -> None:
        """print(*objects, sep=, end=): `flush` is accepted and means nothing here."""
        if file is not None:
            raise TypeError("print(file=...) is not available to parsers")
        sep = " " if sep is None else sep
        end = "\n" if end is None else end
        if type(sep) is not str or type(end) is not str:
            raise TypeError("sep and end must be None or str")
        if self._room <= 0:
            return
        text = sep.join([shown_str(item) for item in objects]) + end
        kept = text[: self._room]
        self._room -= len(kept)
        self._parts.append(kept)

    def __call__(self) -> str:
        """What `printed` reads."""
        return "".join(self._parts)

    def __repr__(self) -> str:
        return "<print>"


def print_factory(max_chars: int) -> Callable[..., PrintBuffer]:
    """The `_print_` of one call: RestrictedPython calls it with `_getattr_`, unused here."""

    def make(_getattr_: Any = None) -> PrintBuffer:
        return PrintBuffer(max_chars)

    return make
