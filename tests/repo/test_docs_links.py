"""The documents hang together: links resolve, the README links every document."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.repo.markdown import ROOT, anchors, documents, links

DOCUMENTS = documents()


def test_the_documents_are_found() -> None:
    names = {path.relative_to(ROOT).as_posix() for path in DOCUMENTS}
    assert {"README.md", "docs/parsers.md", "docs/security.md", "docs/adr/README.md"} <= names


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(document: Path) -> None:
    for target in links(document):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        file_part, _, fragment = target.partition("#")
        linked = (document.parent / file_part).resolve() if file_part else document
        assert linked.exists(), f"{document.name}: {target} does not exist"
        assert ROOT in linked.parents or linked == ROOT, f"{document.name}: {target} is outside"
        if fragment and linked.suffix == ".md":
            assert fragment in anchors(linked), f"{document.name}: no heading for {target}"


def test_the_readme_links_every_document() -> None:
    readme = ROOT / "README.md"
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in links(readme)}
    wanted = [path for path in DOCUMENTS if path.parent == ROOT / "docs"]
    wanted += [ROOT / "docs" / "adr", ROOT / "CONTRIBUTING.md", ROOT / "SECURITY.md"]
    wanted += [ROOT / "CHANGELOG.md", ROOT / "LICENSE"]
    missing = [path.relative_to(ROOT).as_posix() for path in wanted if path not in linked]
    assert not missing, f"README.md does not link {missing}"


def test_the_adr_index_lists_every_record() -> None:
    folder = ROOT / "docs" / "adr"
    index = folder / "README.md"
    listed = {(folder / target).resolve() for target in links(index)}
    records = sorted(folder.glob("[0-9][0-9][0-9][0-9]-*.md"))
    assert len(records) >= 6
    assert [path for path in records if path not in listed] == []


# A repository path in backticks: a top-level folder, then a path (placeholders such as
# `TYPE.py` or `gateway/.../records.py` name no one file and are left out).
REPO_PATH = re.compile(
    r"`((?:sdk|gateway|sandbox|tools|tests|examples|bench|scripts|proto|docs)/[^`\s]*)`"
)
PLACEHOLDER = re.compile(r"\.\.\.|[A-Z]{3,}")


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_named_repository_paths_exist(document: Path) -> None:
    text = document.read_text(encoding="utf-8")
    named = {path for path in REPO_PATH.findall(text) if not PLACEHOLDER.search(path)}
    missing = sorted(path for path in named if not (ROOT / path).exists())
    assert not missing, f"{document.name} names paths that do not exist: {missing}"
