"""Checks a parser source must pass before it is stored or run."""

from __future__ import annotations

import ast

from preservarium.errors import InvalidParserSourceError

MAX_SOURCE_BYTES = 256 * 1024
FILENAME = "<parser>"
# The import namespaces a parser may use (docs/parsers.md); the sandbox serves exactly these.
VETTED_IMPORTS = frozenset(
    {"math", "struct", "base64", "binascii", "json", "datetime", "re", "protowire"}
)


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


def denied_import(tree: ast.Module) -> tuple[str, int] | None:
    """The first import outside the vetted list, with its line, or None."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = ["." * node.level + (node.module or "")]
        else:
            continue
        for name in names:
            if name not in VETTED_IMPORTS:
                return name, node.lineno
    return None


def import_refusal(name: str) -> str:
    """The message for an import outside the vetted list."""
    allowed = ", ".join(sorted(VETTED_IMPORTS))
    return f"import of {name!r} is not allowed; parsers may import: {allowed}"


def check_syntax(source: str) -> None:
    """Refuse source that does not parse as Python (naming the line) or imports a module
    outside the vetted list."""
    try:
        tree = ast.parse(source, filename=FILENAME)
    except SyntaxError as exc:
        raise InvalidParserSourceError(
            f"syntax error at line {exc.lineno}: {exc.msg}", line=exc.lineno
        ) from exc
    except (RecursionError, MemoryError) as exc:
        raise InvalidParserSourceError("parser source is nested too deeply to compile") from exc
    denied = denied_import(tree)
    if denied is not None:
        name, line = denied
        raise InvalidParserSourceError(f"line {line}: {import_refusal(name)}", line=line)


def validate_source(raw: bytes) -> str:
    """Every check of this module; return the decoded source."""
    source = decode_source(raw)
    check_syntax(source)
    return source
