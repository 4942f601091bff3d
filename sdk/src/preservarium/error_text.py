"""Script errors as one line for humans: the parser line named once."""

from __future__ import annotations

import re


def without_line(message: str, line: int) -> str:
    """`message` without the parser line it names, for a caller that names it already
    (the sandbox's messages often start "line 3: ..." or "Line 3: ...")."""
    mention = re.compile(
        rf"\s*\(line {line}\)|\bline {line}:\s*|\s+at line {line}\b|,\s*line {line}\b",
        re.IGNORECASE,
    )
    return mention.sub("", message).strip() or message


def with_line(kind: str, message: str, line: int | None) -> str:
    """`kind at line N: message` (or `kind: message` when there is no line)."""
    message = " ".join(message.split())
    if line is None:
        return f"{kind}: {message}"
    return f"{kind} at line {line}: {without_line(message, line)}"
