"""The images' environments run compose.yaml's services here, and their healthchecks pass.

Each service runs its Dockerfile's ENTRYPOINT from its own environment, with the Dockerfile's
ENV and compose.yaml's environment, only the addresses pointed at local services: the test
PostgreSQL (a throwaway database), the session's Kafka-protocol broker, free ports.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from preservarium_tools.embedded.broker import EmbeddedBroker

from tests.packaging import compose_file
from tests.packaging.conftest import Image
from tests.packaging.replay import ROOT
from tests.support.net import free_port
from tests.support.postgres import create_database, drop_database

# The first test to ask for `images` builds both environments (wheels, an sdist compiled,
# three venvs): about a minute of CPU, several minutes of wall time on a loaded machine,
# all counted in that test's timeout.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

VARIABLES = {"POSTGRES_PASSWORD": "unused-here", "PRESERVARIUM_SECRET_KEY": "k" * 44}
START_TIMEOUT_S = 40.0
STOP_TIMEOUT_S = 20.0
METRIC = re.compile(r"^# TYPE (preservarium_\w+) (\w+)$", re.MULTILINE)
DOC_METRIC = re.compile(r"\bpreservarium_(?:gateway|sandbox|task|tasks|gc|event_loop)_\w+")
# One line per gateway process when the parent gathers its children's metrics.
FROZEN = re.compile(r"^preservarium_gc_frozen_objects(?:\{[^}]*\})? ([0-9.e+]+)$", re.MULTILINE)
SAMPLE_SUFFIX = re.compile(r"_(?:bucket|sum|count|created)$")


@dataclass(frozen=True)
class Service:
    """One compose service run from an image's environment."""

    name: str
    image: Image
    definition: dict[str, Any]
    env: dict[str, str]

    @classmethod
    def of(cls, name: str, image: Image, overrides: dict[str, str]) -> Service:
        """compose.yaml's service `name`, its addresses replaced by `overrides`."""
        definition = compose_file.service(name, VARIABLES)
        composed = compose_file.environment(definition)
        assert set(overrides) <= set(composed), "only what compose.yaml sets is repointed"
        env = image.venv.env(image.runtime.env())
        env.update(composed)
        env.update(overrides)
        return cls(name, image, definition, env)

    def run(self, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run one of the environment's commands with the service's environment."""
        command = [str(self.image.venv.bin / argv[0]), *argv[1:]]
        return subprocess.run(
            command, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def healthcheck(self) -> list[str]:
        """compose.yaml's healthcheck command (exec form, CMD)."""
        test = self.definition["healthcheck"]["test"]
        assert test[0] == "CMD", test
        return list(test[1:])

    @contextmanager
    def started(self, logs: Path) -> Iterator[subprocess.Popen[str]]:
        """Run the Dockerfile's ENTRYPOINT; SIGTERM it on the way out, as `docker stop` does."""
        entrypoint = self.image.runtime.last("ENTRYPOINT").exec_form()
        assert entrypoint is not None
        with (logs / f"{self.name}.log").open("w+") as log:
            process = subprocess.Popen(
                [str(self.image.venv.bin / entrypoint[0]), *entrypoint[1:]],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
            try:
                yield process
            finally:
                stopped = stop(process)
                log.seek(0)
                output = log.read()
            assert stopped == 0, f"{self.name} exited {stopped} on SIGTERM:\n{output}"
            assert "Traceback" not in output, output

    def wait_healthy(self, process: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
        """Run the healthcheck until it passes, as Docker does during start_period."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            done = self.run(self.healthcheck(), timeout=30)
            if done.returncode == 0:
                return done
            assert process.poll() is None, f"{self.name} exited {process.returncode}"
            assert time.monotonic() < deadline, f"{self.name} never healthy: {done.stderr}"
            time.sleep(0.3)


def stop(process: subprocess.Popen[str]) -> int:
    """SIGTERM, then SIGKILL after the grace period; the exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The single line a probe printed."""
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def scrape(port: int) -> dict[str, str]:
    """Metric name -> type, from a Prometheus endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return dict(METRIC.findall(response.read().decode()))


def until_frozen(port: int, timeout_s: float = 10.0) -> None:
    """Wait until the service on `port` reports its start-up objects frozen."""
    deadline = time.monotonic() + timeout_s
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
        found = [float(value) for value in FROZEN.findall(text)]
        if found and min(found) > 10_000:
            return
        shown = [line for line in text.splitlines() if "frozen" in line]
        assert time.monotonic() < deadline, f"port {port}: {shown}"
        time.sleep(0.2)


@dataclass(frozen=True)
class Ports:
    """Local stand-ins for the addresses compose.yaml gives."""

    sandbox: int
    coap: int
    sandbox_metrics: int
    gateway_metrics: int
    coaps: int
    api: int

    @classmethod
    def free(cls) -> Ports:
        """Ports nobody listens on now."""
        udp = socket.SOCK_DGRAM
        return cls(free_port(), free_port(udp), free_port(), free_port(), free_port(udp),
                   free_port())  # fmt: skip


def run_stack(images: dict[str, Image], database_url: str, bootstrap: str, logs: Path) -> None:
    """migrate, then sandbox, then gateway, each checked by its healthcheck; then stop."""
    ports = Ports.free()
    sandbox_addr = f"127.0.0.1:{ports.sandbox}"
    migrate = Service.of(
        "migrate",
        images["tools"],
        {"PRESERVARIUM_DATABASE_URL": database_url, "PRESERVARIUM_SANDBOX_ADDR": sandbox_addr},
    )
    sandbox = Service.of(
        "sandbox",
        images["sandbox"],
        {
            "PRESERVARIUM_DATABASE_URL": database_url,
            "PRESERVARIUM_SANDBOX_LISTEN": sandbox_addr,
            "PRESERVARIUM_METRICS_PORT": str(ports.sandbox_metrics),
        },
    )
    gateway = Service.of(
        "gateway",
        images["gateway"],
        {
            "PRESERVARIUM_DATABASE_URL": database_url,
            "PRESERVARIUM_KAFKA_BOOTSTRAP": bootstrap,
            "PRESERVARIUM_TOPIC_PREFIX": f"pkg{uuid.uuid4().hex[:8]}.",
            "PRESERVARIUM_SANDBOX_ADDR": sandbox_addr,
            "PRESERVARIUM_COAP_BIND": f"127.0.0.1:{ports.coap}",
            "PRESERVARIUM_COAPS_BIND": f"127.0.0.1:{ports.coaps}",
            "PRESERVARIUM_API_LISTEN": f"127.0.0.1:{ports.api}",
            "PRESERVARIUM_METRICS_PORT": str(ports.gateway_metrics),
        },
    )
    migrated = migrate.run([*migrate.definition["entrypoint"], *migrate.definition["command"]])
    assert migrated.returncode == 0, migrated.stderr

    not_yet = sandbox.run(sandbox.healthcheck())
    assert not_yet.returncode == 1
    assert "UNAVAILABLE" in one_line(not_yet)
    not_yet = gateway.run([*gateway.healthcheck(), "--timeout", "0.5"])
    assert not_yet.returncode == 1
    assert "no answer" in one_line(not_yet)

    with ExitStack() as stack:
        sandbox_process = stack.enter_context(sandbox.started(logs))
        assert "SERVING" in one_line(sandbox.wait_healthy(sandbox_process))
        gateway_process = stack.enter_context(gateway.started(logs))
        assert "2.05" in one_line(gateway.wait_healthy(gateway_process))
        # The gateway's environment reaches the sandbox at PRESERVARIUM_SANDBOX_ADDR.
        reached = gateway.run(["preservarium-sandbox-probe"])
        assert reached.returncode == 0, reached.stderr
        exposed = scrape(ports.gateway_metrics) | scrape(ports.sandbox_metrics)
        # Each service froze its start-up objects once it served (docs/operations.md).
        for port in (ports.gateway_metrics, ports.sandbox_metrics):
            until_frozen(port)
    assert_documented(exposed)


def assert_documented(exposed: dict[str, str]) -> None:
    """docs/operations.md names exactly the metrics the services expose."""
    text = (ROOT / "docs" / "operations.md").read_text()
    documented = {SAMPLE_SUFFIX.sub("", name) for name in DOC_METRIC.findall(text)}
    # prometheus-client also types each counter's and histogram's `_created` timestamps.
    metrics = {name for name in exposed if not name.endswith("_created")}
    assert documented == metrics, documented ^ metrics


async def test_services_start_from_the_images_and_pass_their_healthchecks(
    images: dict[str, Image], broker: EmbeddedBroker, tmp_path: Path
) -> None:
    database_url = await create_database("pkg")
    try:
        await asyncio.to_thread(run_stack, images, database_url, broker.bootstrap, tmp_path)
    finally:
        await drop_database(database_url)
