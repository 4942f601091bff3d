"""The images' Python environments, built as their Dockerfiles build them (once a run)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.packaging import dockerfile
from tests.packaging.replay import ROOT, Venv, replay_builder, replay_install, run

SERVICES = ("gateway", "sandbox")
# The services' images, and the tools' (the `preservarium` command, for compose's `migrate`).
IMAGES = (*SERVICES, "tools")


@dataclass(frozen=True)
class Image:
    """One image's Dockerfile and the environment its stages produce here."""

    service: str
    stages: list[dockerfile.Stage]
    wheels: Path
    venv: Venv

    @property
    def runtime(self) -> dockerfile.Stage:
        """The stage the image runs."""
        return self.stages[-1]

    def distributions(self) -> dict[str, str]:
        """Installed distributions, normalised name -> version."""
        code = (
            "import importlib.metadata as m, json, re; print(json.dumps({"
            "re.sub(r'[-_.]+', '-', d.metadata['Name']).lower(): d.version"
            " for d in m.distributions()}))"
        )
        done = run(
            [str(self.venv.bin / "python"), "-c", code], cwd=self.venv.path, env=self.venv.env()
        )
        found: dict[str, str] = json.loads(done.stdout)
        return found


def dockerfile_path(service: str) -> Path:
    """Dockerfile.gateway, Dockerfile.sandbox or Dockerfile.tools."""
    return ROOT / f"Dockerfile.{service}"


def _build(service: str, scratch: Path, builder: Venv) -> Image:
    stages = dockerfile.parse(dockerfile_path(service))
    wheels = replay_builder(stages[0], scratch=scratch / service, builder=builder)
    venv = Venv.create(scratch / f"{service}-venv")
    replay_install(stages[-1], wheels=wheels, venv=venv)
    return Image(service, stages, wheels, venv)


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Image]]:
    """Every image: builder stages replayed, then each runtime install in its own venv."""
    scratch = tmp_path_factory.mktemp("images")
    builder = Venv.create(scratch / "builder-venv")
    with ThreadPoolExecutor(max_workers=len(SERVICES)) as pool:
        built = list(pool.map(lambda service: _build(service, scratch, builder), SERVICES))
    # The tools image compiles DTLSSocket too (it installs the gateway): after the gateway's
    # build, pip's wheel cache has it, where two compiles at once on 2 cores took minutes.
    built += [_build(image, scratch, builder) for image in IMAGES if image not in SERVICES]
    yield {image.service: image for image in built}
