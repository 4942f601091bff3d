"""scripts/system-deps: `make install` gets the Debian packages a DTLS build and its tests need."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

from tests.packaging.replay import ROOT

SCRIPT = ROOT / "scripts" / "system-deps"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def run_unprivileged(path_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The script as an unprivileged user (optionally with `path_dir` first on PATH)."""
    env = {"PATH": os.environ["PATH"]}
    if path_dir is not None:
        env["PATH"] = f"{path_dir}{os.pathsep}{env['PATH']}"
    return subprocess.run(
        [*NOBODY, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30, check=False
    )


def test_make_install_runs_it_before_the_python_environment() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^install:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe is not None
    lines = [line.strip() for line in recipe.group(1).splitlines()]
    assert lines[0] == "scripts/system-deps"
    assert any(" sync " in line for line in lines[1:])


def test_nothing_happens_when_every_package_is_installed() -> None:
    done = run_unprivileged()
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_unprivileged_user_gets_one_line_naming_what_is_missing() -> None:
    # A dpkg-query that reports libtool and libcoap3-bin as absent and defers to the real
    # one for everything else: this machine has every package, so absence is simulated.
    # Outside pytest's private tmp tree, which the unprivileged user cannot enter.
    with tempfile.TemporaryDirectory() as scratch:
        bin_dir = Path(scratch)
        bin_dir.chmod(0o755)
        done = _with_fake_dpkg_query(bin_dir)
    assert done.returncode == 1
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    named = re.match(r"missing Debian packages: ([a-z0-9 -]+) \(", line)
    assert named is not None and named.group(1).split() == ["libtool", "libcoap3-bin"]


def _with_fake_dpkg_query(bin_dir: Path) -> subprocess.CompletedProcess[str]:
    fake = bin_dir / "dpkg-query"
    fake.write_text(
        '#!/bin/sh\nfor last; do :; done\ncase "$last" in libtool|libcoap3-bin) exit 1;; esac\n'
        'exec /usr/bin/dpkg-query "$@"\n'
    )
    fake.chmod(0o755)
    return run_unprivileged(bin_dir)
