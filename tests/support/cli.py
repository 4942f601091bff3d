"""Run the real console scripts of the virtual environment as subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`preservarium ARGS...` with the given extra environment; never raises on failure."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [str(BIN / "preservarium"), *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )
