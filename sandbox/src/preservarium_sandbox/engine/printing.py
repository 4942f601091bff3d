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


class CallOutput:
    """Everything one call printed, from any of its functions, up to `room` characters.

    The answer carries it back (`parser test` shows it, live records keep it), so an
    integrator sees what their parser printed without anything reaching a file.
    """

    __slots__ = ("_parts", "_room")

    def __init__(self, room: int) -> None:
        self._parts: list[str] = []
        self._room = room

    def keep(self, text: str) -> str:
        """Take as much of `text` as there is room for; return what was taken."""
        kept = text[: max(self._room, 0)]
        self._room -= len(kept)
        if kept:
            self._parts.append(kept)
        return kept

    def text(self) -> str:
        """What the call printed, in order."""
        return "".join(self._parts)


class PrintBuffer:
    """The text one of a parser's functions printed (what its `printed` reads); every
    part is also the call's output, and the call's room bounds them all."""

    __slots__ = ("_output", "_parts")

    def __init__(self, output: CallOutput) -> None:
        self._parts: list[str] = []
        self._output = output

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
        text = sep.join([shown_str(item) for item in objects]) + end
        kept = self._output.keep(text)
        if kept:
            self._parts.append(kept)

    def __call__(self) -> str:
        """What `printed` reads."""
        return "".join(self._parts)

    def __repr__(self) -> str:
        return "<print>"


def print_factory(output: CallOutput) -> Callable[..., PrintBuffer]:
    """The `_print_` of one call: RestrictedPython calls it with `_getattr_`, unused here."""

    def make(_getattr_: Any = None) -> PrintBuffer:
        return PrintBuffer(output)

    return make
