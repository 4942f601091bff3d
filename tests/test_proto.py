"""The proto module: buf lint is clean and the committed generated code is current."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from preservarium import protogen


def test_buf_lint_is_clean() -> None:
    buf = Path(sys.executable).parent / "buf"
    done = subprocess.run(
        [str(buf), "lint"],
        cwd=protogen.ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "BUF_CACHE_DIR": str(protogen.ROOT / ".buf-cache")},
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_generated_modules_are_current(tmp_path: Path) -> None:
    fresh = protogen.generate(tmp_path)
    for path in fresh:
        committed = protogen.OUTPUT_ROOT / path.relative_to(tmp_path)
        assert committed.read_text() == path.read_text(), (
            f"{committed} is out of date: run `make proto`"
        )
