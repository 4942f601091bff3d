"""`preservarium-gateway --processes 2`, for real: both processes answer devices on the one
CoAP port, the parent's metrics endpoint shows each by its `process` label, and the
children end with the parent however it ends (SIGTERM: a clean stop; SIGKILL: they die).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import struct
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator

import pytest
from preservarium.db.engine import make_engine
from preservarium.repositories import SQLDeviceRepository
from preservarium_sandbox.server import SandboxServer
from preservarium_tools import coapwire as cw
from preservarium_tools.coapwire import CoapClient
from preservarium_tools.embedded.broker import EmbeddedBroker
from prometheus_client.parser import text_string_to_metric_families

from tests.embedded.support import alive, descendants
from tests.support.cli import BIN
from tests.support.kafka import prefix
from tests.support.net import free_port

DEVICES = 24
READING = bytes.fromhex("01020304") + struct.pack(">h", 123)
GONE_WITHIN_S = 20.0


class Gateways:
    """A `preservarium-gateway --processes 2` process and where it serves."""

    def __init__(self, env: dict[str, str], coap: int, metrics: int) -> None:
        self.coap = coap
        self.metrics = metrics
        self.process = subprocess.Popen(
            [str(BIN / "preservarium-gateway"), "--processes", "2"], env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The parent's metrics, by sample name and labels."""
        url = f"http://127.0.0.1:{self.metrics}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def up(self) -> set[str]:
        """The process indexes whose metrics answered the parent's last scrape."""
        try:
            found = self.samples()
        except OSError:
            return set()
        return {dict(labels)["process"] for (name, labels), value in found.items()
                if name == "preservarium_gateway_process_up" and value == 1}  # fmt: skip

    def children(self) -> set[int]:
        return descendants(self.process.pid)

    def end(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


async def until(condition: object, what: str, timeout_s: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await asyncio.to_thread(condition):  # type: ignore[arg-type]
        assert loop.time() < deadline, f"still not: {what}"
        await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
async def registered(gw_db: str) -> str:
    engine = make_engine(gw_db)
    devices = SQLDeviceRepository(engine)
    for n in range(DEVICES):
        await devices.register(f"procs-{n}", "thermo")
    await engine.dispose()
    return gw_db


def environment(db: str, broker: EmbeddedBroker, sandbox: SandboxServer) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("PRESERVARIUM_")}
    return {
        **keep,
        "PRESERVARIUM_DATABASE_URL": db,
        "PRESERVARIUM_KAFKA_BOOTSTRAP": broker.bootstrap,
        "PRESERVARIUM_TOPIC_PREFIX": prefix(),
        "PRESERVARIUM_SANDBOX_ADDR": sandbox.config.listen,
        "PRESERVARIUM_DEVICE_AUTH": "optional",
        "PRESERVARIUM_DEVICE_RATE_PER_MIN": "0",
        "PRESERVARIUM_SOURCE_RATE_PER_MIN": "0",
        "PRESERVARIUM_COAPS_BIND": "",
        "PRESERVARIUM_API_LISTEN": "",
    }


@pytest.fixture
async def gateways(
    registered: str, gw_sandbox: SandboxServer, broker: EmbeddedBroker
) -> AsyncIterator[Gateways]:
    coap, metrics = free_port(socket.SOCK_DGRAM), free_port()
    env = environment(registered, broker, gw_sandbox)
    env |= {"PRESERVARIUM_COAP_BIND": f"127.0.0.1:{coap}",
            "PRESERVARIUM_METRICS_PORT": str(metrics)}  # fmt: skip
    running = Gateways(env, coap, metrics)
    try:
        await until(lambda: running.up() == {"0", "1"}, "both processes serving metrics")
        yield running
    finally:
        running.end()


def served(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[str, float]:
    """Contacts answered 2.01, by process."""
    counts: dict[str, float] = {}
    for (name, labels), value in samples.items():
        found = dict(labels)
        if name == "preservarium_gateway_contacts_total" and found.get("code") == "2.01":
            counts[found["process"]] = counts.get(found["process"], 0.0) + value
    return counts


async def contact_every_device(port: int) -> None:
    """One CON per device, each device its own socket (a source address and port)."""
    clients = [CoapClient("127.0.0.1", port, timeout_s=10) for _ in range(DEVICES)]
    for client in clients:
        await client.start()
    try:
        answers = await asyncio.gather(*(
            client.send(cw.request(cw.POST, f"/d/procs-{n}", mid=client.next_mid(),
                                   token=os.urandom(4), payload=READING))
            for n, client in enumerate(clients)
        ))  # fmt: skip
    finally:
        for client in clients:
            await client.stop()
    assert {answer.dotted_code for answer in answers} == {"2.01"}


def wait_gone(pids: set[int]) -> set[int]:
    deadline = time.monotonic() + GONE_WITHIN_S
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive(pids)


class TestTwoProcesses:
    async def test_both_answer_on_one_port_and_sigterm_stops_all(self, gateways: Gateways) -> None:
        await contact_every_device(gateways.coap)
        counts = await asyncio.to_thread(lambda: served(gateways.samples()))
        assert set(counts) == {"0", "1"}, counts  # the kernel spread devices over both
        assert sum(counts.values()) == DEVICES
        children = gateways.children()
        assert len(children) >= 2
        gateways.process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(gateways.process.wait, GONE_WITHIN_S) == 0
        assert not await asyncio.to_thread(wait_gone, children)

    async def test_children_die_with_a_killed_parent(self, gateways: Gateways) -> None:
        children = gateways.children()
        assert len(children) >= 2
        gateways.process.kill()
        gateways.process.wait()
        assert not await asyncio.to_thread(wait_gone, children)


class TestSetting:
    @pytest.mark.parametrize(
        ("args", "env"),
        [(["--processes", "0"], {}), ([], {"PRESERVARIUM_GATEWAY_PROCESSES": "0"}),
         (["--processes", "many"], {})],
    )  # fmt: skip
    def test_fewer_than_one_process_is_one_clear_line(
        self, args: list[str], env: dict[str, str]
    ) -> None:
        done = subprocess.run(
            [str(BIN / "preservarium-gateway"), *args], env={**os.environ, **env},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert "processes" in lines[0].lower() or "PROCESSES" in lines[0]
