"""Dockerfile.gateway, Dockerfile.sandbox, Dockerfile.tools and .dockerignore say what the
issue asks."""

from __future__ import annotations

import re

import pytest

from tests.packaging import dockerfile
from tests.packaging.conftest import IMAGES, SERVICES, dockerfile_path
from tests.packaging.replay import ROOT, UV_INSTALL
from tests.repo.settings_table import documented_settings

PINNED_PYTHON = re.compile(r"^python:3\.11\.\d+-slim-bookworm$")
ROOT_USERS = {"root", "0"}


def documented_variables() -> set[str]:
    """The environment variables of the settings table in docs/settings.md."""
    return set(documented_settings())


def stages(service: str) -> list[dockerfile.Stage]:
    return dockerfile.parse(dockerfile_path(service))


def runs(stage: dockerfile.Stage) -> list[str]:
    return [" ".join(ins.body().split()) for ins in stage.all("RUN")]


@pytest.mark.parametrize("service", IMAGES)
def test_multi_stage_on_a_pinned_slim_python(service: str) -> None:
    found = stages(service)
    assert len(found) == 2
    assert found[0].name == "builder"
    for stage in found:
        assert PINNED_PYTHON.match(stage.base), stage.base
    assert found[0].base == found[1].base


@pytest.mark.parametrize("service", IMAGES)
def test_builder_pins_the_workspace_uv(service: str) -> None:
    makefile = (ROOT / "Makefile").read_text()
    pinned = re.search(r"^UV_VERSION := (\S+)$", makefile, re.MULTILINE)
    assert pinned is not None
    installs = [match for cmd in runs(stages(service)[0]) if (match := UV_INSTALL.match(cmd))]
    assert [match["version"] for match in installs] == [pinned.group(1)]


@pytest.mark.parametrize("service", SERVICES)
def test_builder_builds_wheels_from_the_lock(service: str) -> None:
    commands = " && ".join(runs(stages(service)[0]))
    package = f"preservarium-{service}"
    assert f"uv export --frozen --no-dev --package {package} --no-emit-workspace" in commands
    source_built = " --no-binary=dtlssocket" if service == "gateway" else ""
    wheel = (
        f"pip wheel --no-deps --only-binary=:all:{source_built} --require-hashes"
        " -r requirements.txt"
    )
    assert wheel in commands
    assert "uv build --wheel --package preservarium-sdk --out-dir /wheels" in commands
    assert f"uv build --wheel --package {package} --out-dir /wheels" in commands
    other = "gateway" if service == "sandbox" else "sandbox"
    assert f"preservarium-{other}" not in commands
    copied = " ".join(ins.body() for ins in stages(service)[0].all("COPY"))
    assert f"{other}/" not in copied, "the builder needs none of the other service's code"


@pytest.mark.parametrize("service", IMAGES)
def test_runtime_installs_only_its_wheels_offline(service: str) -> None:
    runtime = stages(service)[1]
    install = [cmd for cmd in runs(runtime) if "pip install" in cmd]
    assert install == [f"pip install --no-index --find-links /wheels preservarium-{service}"]
    (step,) = [ins for ins in runtime.all("RUN") if "pip install" in ins.body()]
    flags, _ = step.flags()
    assert flags["mount"] == "type=bind,from=builder,source=/wheels,target=/wheels"
    assert not runtime.all("COPY"), "the wheels are mounted, not copied into a layer"


@pytest.mark.parametrize("service", IMAGES)
def test_runs_as_a_non_root_user(service: str) -> None:
    runtime = stages(service)[1]
    user = runtime.last("USER").body().split(":")[0]
    assert user not in ROOT_USERS
    assert any("useradd" in cmd and f"--uid {user}" in cmd for cmd in runs(runtime))
    entrypoint = runtime.last("ENTRYPOINT")
    assert runtime.instructions.index(runtime.last("USER")) < runtime.instructions.index(entrypoint)


@pytest.mark.parametrize("service", SERVICES)
def test_exec_form_entrypoint_gets_sigterm(service: str) -> None:
    runtime = stages(service)[1]
    assert runtime.last("ENTRYPOINT").exec_form() == [f"preservarium-{service}"]
    for ins in runtime.all("CMD"):
        assert ins.exec_form() is not None, f"line {ins.line}: shell-form CMD"
    assert runtime.last("STOPSIGNAL").body() == "SIGTERM"


@pytest.mark.parametrize("service", SERVICES)
def test_healthcheck_runs_the_probe(service: str) -> None:
    healthcheck = stages(service)[1].last("HEALTHCHECK")
    flags, command = healthcheck.flags()
    assert {"interval", "timeout", "start-period", "retries"} <= set(flags)
    keyword, _, form = command.partition(" ")
    assert keyword == "CMD"
    probe = dockerfile.Instruction("CMD", form, healthcheck.line).exec_form()
    # The images carry no `preservarium` command: each runs its own probe script.
    assert probe is not None and probe[0] == f"preservarium-{service}-probe"


@pytest.mark.parametrize("service", SERVICES)
def test_image_settings_are_documented(service: str) -> None:
    env = stages(service)[1].env()
    ours = {name for name in env if name.startswith("PRESERVARIUM_")}
    assert ours and ours <= documented_variables()


def test_exposed_ports() -> None:
    assert "5683/udp" in stages("gateway")[1].last("EXPOSE").body().split()
    assert "5684/udp" in stages("gateway")[1].last("EXPOSE").body().split()  # DTLS
    assert "50051/tcp" in stages("sandbox")[1].last("EXPOSE").body().split()
    assert stages("sandbox")[1].env()["PRESERVARIUM_SANDBOX_LISTEN"] == "0.0.0.0:50051"


@pytest.mark.parametrize(
    "path",
    [".venv/bin/python", ".git/HEAD", ".tools/bin/uv", "tests/conftest.py", "var/preservarium.db",
     "bench/__main__.py", "sdk/src/preservarium/__pycache__/settings.cpython-311.pyc",
     ".env", "docs/operations.md"],
)  # fmt: skip
def test_dockerignore_keeps_out(path: str) -> None:
    assert dockerfile.DockerIgnore.read(ROOT / ".dockerignore").excluded(path)


@pytest.mark.parametrize("service", IMAGES)
def test_dockerignore_keeps_what_the_builder_copies(service: str) -> None:
    ignore = dockerfile.DockerIgnore.read(ROOT / ".dockerignore")
    for ins in stages(service)[0].all("COPY"):
        for source in ins.body().split()[:-1]:
            assert not ignore.excluded(source), source
            for path in (ROOT / source).rglob("*"):
                relative = path.relative_to(ROOT).as_posix()
                if "__pycache__" not in relative:
                    assert not ignore.excluded(relative), relative


def test_tools_image_builds_every_distribution_but_not_the_broker() -> None:
    """The tools depend on both services (`up` starts them): the image holds all four
    distributions, from the lock, but not the `broker` extra that only `up` uses."""
    builder, runtime = stages("tools")
    commands = " && ".join(runs(builder))
    assert "uv export --frozen --no-dev --package preservarium-tools --no-emit-workspace" in (
        commands
    )
    assert "--all-extras" not in commands and "--extra" not in commands
    for package in ("sdk", "gateway", "sandbox", "tools"):
        assert f"uv build --wheel --package preservarium-{package} --out-dir /wheels" in commands
    assert runtime.last("ENTRYPOINT").exec_form() == ["preservarium"]
    assert runtime.last("HEALTHCHECK").body() == "NONE", "a one-shot command, not a service"


@pytest.mark.parametrize("service", ["gateway", "tools"])
def test_gateway_builder_alone_has_the_dtls_build_tools(service: str) -> None:
    """The gateway's DTLSSocket builds from source (the tools image installs the gateway)."""
    builder, runtime = stages(service)
    (apt,) = [cmd for cmd in runs(builder) if "apt-get install" in cmd]
    packages = set(apt.split("--no-install-recommends", 1)[1].split("&&")[0].split())
    assert {"autoconf", "automake", "libtool", "make", "gcc", "libc6-dev"} <= packages
    assert "rm -rf /var/lib/apt/lists/*" in apt
    assert not [cmd for cmd in runs(runtime) if "apt-get" in cmd], "the runtime stays slim"
    assert not [cmd for cmd in runs(stages("sandbox")[0]) if "apt-get" in cmd]
