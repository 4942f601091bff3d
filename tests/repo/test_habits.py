"""The project's habits hold: `make lint` and pre-commit run the same checks, `make
typecheck` exists, `make clean` cleans, and the licence is the full Apache-2.0 text."""

from __future__ import annotations

import re

import yaml

from tests.repo.markdown import ROOT

RULE = re.compile(r"^([\w-]+):[^\n=]*\n((?:\t[^\n]*\n)*)", re.MULTILINE)


def recipes() -> dict[str, list[str]]:
    """Makefile target -> its recipe lines."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return {
        target: [line.strip() for line in body.splitlines()] for target, body in RULE.findall(text)
    }


def test_typecheck_runs_mypy_and_lint_runs_it() -> None:
    rules = recipes()
    assert rules["typecheck"] == ["$(BIN)/mypy"]
    assert "$(BIN)/ruff check ." in rules["lint"]
    assert "$(BIN)/ruff format --check ." in rules["lint"]
    assert any(line.endswith("typecheck") for line in rules["lint"])


def test_clean_removes_pycache_directories() -> None:
    assert any("__pycache__" in line and "rm -rf" in line for line in recipes()["clean"])


def test_pre_commit_runs_what_make_lint_runs() -> None:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    (repo,) = config["repos"]
    assert repo["repo"] == "local"
    entries = [hook["entry"].split() for hook in repo["hooks"]]
    assert all(hook["language"] == "system" for hook in repo["hooks"])
    assert [entry[:3] for entry in entries] == [
        [".venv/bin/ruff", "check", "--force-exclude"],
        [".venv/bin/ruff", "format", "--check"],
        [".venv/bin/mypy"],
    ]


def test_the_licence_is_the_full_apache_text() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.lstrip().startswith("Apache License\n")
    assert "Version 2.0, January 2004" in text
    for clause in range(1, 10):
        assert re.search(rf"^\s+{clause}\. [A-Z]", text, re.MULTILINE), clause
    assert "END OF TERMS AND CONDITIONS" in text


def test_make_test_runs_every_check_of_make_lint() -> None:
    recipe = "\n".join(recipes()["test"])
    for check in ("$(BIN)/ruff check .", "$(BIN)/ruff format --check .", "$(BIN)/mypy >"):
        assert check in recipe
