"""Replay an image's builder stage and its runtime install step here, without Docker.

The COPY instructions copy from the repository (honouring .dockerignore) into a scratch
build directory, ENV instructions set the environment, and the RUN commands run as they
are written in the Dockerfile, with three substitutions: the image's `/wheels` is a
scratch directory, `pip` is that of a fresh virtual environment, `uv` is the
workspace's own (the same version the Dockerfile installs, checked, instead of a pip
install of it), and `apt-get install` checks that this machine has those packages.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.packaging.dockerfile import DockerIgnore, Instruction, Stage

ROOT = Path(__file__).resolve().parents[2]
UV = ROOT / ".tools" / "bin" / "uv"
IMAGE_WHEELS = "/wheels"
UV_INSTALL = re.compile(r"^pip install\b.*[\"']?uv==(?P<version>[0-9.]+)[\"']?\s*$")
APT_INSTALL = re.compile(r"apt-get install\b[^&;]*?--no-install-recommends(?P<packages>[^&;]*)")
# Options of this machine's pip configuration that a Docker build does not have.
MACHINE_PIP = ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT")


@dataclass(frozen=True)
class Venv:
    """A virtual environment with pip, as a python base image has one."""

    path: Path

    @property
    def bin(self) -> Path:
        """Its scripts directory."""
        return self.path / "bin"

    @classmethod
    def create(cls, path: Path) -> Venv:
        """A fresh environment with pip, from the interpreter running the tests. uv seeds
        its pip: `python -m venv` spent 7 CPU-seconds per environment in ensurepip."""
        command = [str(UV), "venv", "--quiet", "--seed", "--python", sys.executable, str(path)]
        run(command, cwd=path.parent, env=base_env())
        return cls(path)

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """An environment whose PATH starts with this venv's scripts."""
        env = base_env()
        env["PATH"] = f"{self.bin}{os.pathsep}{env['PATH']}"
        env.update(extra or {})
        return env


def base_env() -> dict[str, str]:
    """This process's environment without the PRESERVARIUM_ settings and machine pip options."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PRESERVARIUM_") and key not in MACHINE_PIP
    }
    env["PIP_CONFIG_FILE"] = os.devnull  # like a Docker build: no pip.conf
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run(
    command: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run a command; fail the test with its output if it fails."""
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, (
        f"{command} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    )
    return done


def uv_version() -> str:
    """The version of the workspace's uv."""
    done = run([str(UV), "--version"], cwd=ROOT, env=base_env())
    return done.stdout.split()[1]


def _copy(ins: Instruction, *, workdir: Path, ignore: DockerIgnore) -> None:
    *sources, dest = ins.body().split()
    target = workdir / dest
    for source in sources:
        origin = ROOT / source
        assert not ignore.excluded(source), f"line {ins.line}: {source} is in .dockerignore"
        if origin.is_dir():
            shutil.copytree(origin, target, dirs_exist_ok=True, ignore=_ignored(ignore))
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target / origin.name if dest.endswith("/") else target)


def _ignored(ignore: DockerIgnore) -> Callable[[str, list[str]], set[str]]:
    def names(directory: str, entries: list[str]) -> set[str]:
        relative = Path(directory).resolve().relative_to(ROOT).as_posix()
        return {entry for entry in entries if ignore.excluded(f"{relative}/{entry}")}

    return names


def replay_builder(stage: Stage, *, scratch: Path, builder: Venv) -> Path:
    """Run the builder stage; return the directory that holds its /wheels."""
    ignore = DockerIgnore.read(ROOT / ".dockerignore")
    wheels = scratch / "wheels"
    workdir = scratch / "context"
    tools = scratch / "tools"
    tools.mkdir(parents=True)
    (tools / "uv").symlink_to(UV)
    env = builder.env()
    env["PATH"] = f"{builder.bin}{os.pathsep}{tools}{os.pathsep}{os.environ['PATH']}"
    for ins in stage.instructions:
        if ins.keyword == "ENV":
            env.update(ins.env_pairs())
        elif ins.keyword == "WORKDIR":
            workdir.mkdir(parents=True, exist_ok=True)
        elif ins.keyword == "COPY":
            _copy(ins, workdir=workdir, ignore=ignore)
        elif ins.keyword == "RUN":
            command = ins.body()
            uv_pin = UV_INSTALL.match(command)
            if uv_pin:
                assert uv_pin["version"] == uv_version(), "the image pins another uv than ours"
                continue
            if APT_INSTALL.search(command):
                _assert_installed_here(command)
                continue
            shell = command.replace(IMAGE_WHEELS, str(wheels))
            # Compiling DTLSSocket while the rest of the suite runs beside it takes minutes.
            run(["/bin/sh", "-c", shell], cwd=workdir, env=env, timeout=600)
    return wheels


def _assert_installed_here(command: str) -> None:
    """An image's `apt-get install` is not replayed: this machine must have those packages.

    `make install` put them here (scripts/system-deps); running apt from a test would
    change the machine the suite runs on.
    """
    match = APT_INSTALL.search(command)
    assert match is not None
    for package in match["packages"].split():
        done = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.stdout == "install ok installed", f"{package} is not installed here"


def install_step(stage: Stage) -> Instruction:
    """The runtime stage's RUN that installs the wheels."""
    steps = [ins for ins in stage.all("RUN") if "pip install" in ins.body()]
    assert len(steps) == 1, f"expected one pip install in the runtime stage, got {steps}"
    return steps[0]


def replay_install(stage: Stage, *, wheels: Path, venv: Venv) -> None:
    """Run the runtime stage's pip install, from `wheels`, into `venv`."""
    env = venv.env(stage.env())
    shell = install_step(stage).body().replace(IMAGE_WHEELS, str(wheels))
    run(["/bin/sh", "-c", shell], cwd=venv.path, env=env, timeout=600)
