"""The repository stands on its own: no tracked file points outside it.

A clone has nothing beside it, so a test, a doc or a comment that reads or cites a
folder next to the checkout is broken for every user. The forbidden strings are built
here from parts so that this file does not match itself.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE = re.compile(re.escape("..") + r"/shared\b")
# The project's reference is docs/; an outside contract cited by section is not there.
CITATION = re.compile(r"\bSPEC(?:\.md| section \d+| \d+\b)")


def tracked_files() -> list[Path]:
    """Every file git tracks in this checkout."""
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    return [ROOT / name for name in listing.decode().split("\0") if name]


def tracked_texts() -> list[tuple[str, str]]:
    """(path, text) of every tracked text file; binary files (NUL bytes) are left out."""
    texts = []
    for path in tracked_files():
        if not path.is_file():  # deleted in the work tree, not yet in the index
            continue
        data = path.read_bytes()
        if b"\0" not in data:
            texts.append((path.relative_to(ROOT).as_posix(), data.decode("utf-8", "replace")))
    return texts


def offenders(pattern: re.Pattern[str]) -> list[str]:
    """`path:line` of every tracked line matching `pattern`."""
    return [
        f"{name}:{number}"
        for name, text in tracked_texts()
        for number, line in enumerate(text.splitlines(), start=1)
        if pattern.search(line)
    ]


def test_the_listing_sees_the_repository() -> None:
    names = {path.relative_to(ROOT).as_posix() for path in tracked_files()}
    assert {"README.md", "pyproject.toml", "tests/conftest.py"} <= names


def test_no_tracked_file_reads_or_cites_a_folder_beside_the_checkout() -> None:
    assert offenders(OUTSIDE) == []


def test_no_tracked_file_cites_an_outside_contract() -> None:
    assert offenders(CITATION) == []
