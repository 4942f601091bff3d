"""Reading the repository's Markdown as data: links, headings, code blocks, tables."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#+ (.+)$", re.MULTILINE)
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def documents() -> list[Path]:
    """Every Markdown document a reader of the repository is sent to."""
    top = [ROOT / name for name in ("README.md", "CONTRIBUTING.md", "SECURITY.md")]
    return top + sorted((ROOT / "docs").rglob("*.md"))


def links(path: Path) -> list[str]:
    """The targets of the Markdown links in `path`, code blocks left out."""
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return LINK.findall(text)


def anchor(heading: str) -> str:
    """The anchor a heading gets on the common Markdown renderers."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of `path`."""
    return {anchor(heading) for heading in HEADING.findall(path.read_text(encoding="utf-8"))}


def code_blocks(path: Path, language: str) -> list[str]:
    """The fenced code blocks of `path` in `language`."""
    return [
        body for lang, body in FENCE.findall(path.read_text(encoding="utf-8")) if lang == language
    ]


def section(path: Path, heading: str) -> str:
    """The text of `path` from the heading named `heading` to the next heading."""
    text = path.read_text(encoding="utf-8")
    found = re.search(rf"^#+ {re.escape(heading)}\n(.*?)(?=^#+ |\Z)", text, re.M | re.S)
    assert found, f"{path.name} has no heading {heading!r}"
    return found.group(1)


def first_cells(text: str) -> list[str]:
    """The first cell of every table row in `text` (header and rule rows left out)."""
    cells = []
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells.append(line.split("|")[1].strip())
    return cells[1:] if cells else cells
