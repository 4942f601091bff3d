"""The shipped Efento parser run as plain Python: the oracle for the simulator's messages.

The parser is ordinary Python that imports only `protowire`, `struct` and `datetime`, so
it runs unchanged outside the sandbox; the end-to-end test runs it in the real one.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any
from unittest import mock

from preservarium import protowire

SOURCE = Path(__file__).resolve().parents[2] / "examples" / "parsers" / "efento.py"


class EfentoParser:
    """`parse`, `identify` and `format_command` of examples/parsers/efento.py."""

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self._namespace: dict[str, Any] = {"warn": self.warnings.append}
        with mock.patch.dict(sys.modules, {"protowire": protowire}):
            exec(compile(SOURCE.read_text(encoding="utf-8"), str(SOURCE), "exec"), self._namespace)

    def parse(self, payload: bytes, path: str) -> dict[str, Any]:
        """parse() of a route contact on `path`."""
        result: dict[str, Any] = self._namespace["parse"](payload, self._metadata(path))
        return result

    def identify(self, payload: bytes, path: str) -> str | None:
        """identify() of a route contact on `path`."""
        result: str | None = self._namespace["identify"](payload, self._metadata(path))
        return result

    def format_command(self, command: str, params: dict[str, Any] | None = None) -> bytes:
        """format_command() of a command record."""
        record = {"request_id": "r1", "device_id": "282c02000001", "command": command}
        result: bytes = self._namespace["format_command"]({**record, "params": params or {}})
        return result

    @staticmethod
    def _metadata(path: str) -> dict[str, Any]:
        return {"device_id": None, "device_type": "efento", "path": path, "method": "POST",
                "confirmable": True, "received_at": 1_700_000_000, "query": {}}  # fmt: skip
