"""Checks a parser source must pass before it is stored or run."""

from __future__ import annotations

import ast

from preservarium.errors import InvalidParserSourceError

MAX_SOURCE_BYTES = 256 * 1024
FILENAME = "<parser>"


def decode_source(raw: bytes) -> str:
    """Size and encoding checks: at most 256 KiB of UTF-8."""
    if len(raw) > MAX_SOURCE_BYTES:
        raise InvalidParserSourceError(
            f"parser source is {len(raw)} bytes, over the limit of {MAX_SOURCE_BYTES} bytes"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidParserSourceError(
            f"parser source is not UTF-8 (invalid byte at offset {exc.start})"
        ) from exc


def check_syntax(source: str) -> None:
    """Refuse source that does not parse as Python, naming the line."""
    try:
        ast.parse(source, filename=FILENAME)
    except SyntaxError as exc:
        raise InvalidParserSourceError(
            f"syntax error at line {exc.lineno}: {exc.msg}", line=exc.lineno
        ) from exc
    except (RecursionError, MemoryError) as exc:
        raise InvalidParserSourceError("parser source is nested too deeply to compile") from exc


def validate_source(raw: bytes) -> str:
    """Every check of this module; return the decoded source."""
    source = decode_source(raw)
    check_syntax(source)
    return source
