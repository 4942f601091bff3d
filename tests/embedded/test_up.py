"""`preservarium up` and `preservarium simulate efento`, as a user runs them: real processes."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.embedded.support import UpPorts, UpProcess, alive, descendants, preservarium
from tests.support.cli import run_cli

PARSERS = Path(__file__).resolve().parents[2] / "examples" / "parsers"
MEASUREMENT = re.compile(
    r"^(282c0200000[12]) m (CON|NON) 2\.01 → parsed: "
    r"temperature (-?\d+\.\d+) °C, humidity (\d+) %"
)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A fresh working directory holding only the Efento parser, as examples/parsers/."""
    parsers = tmp_path / "examples" / "parsers"
    parsers.mkdir(parents=True)
    for name in ("efento.py", "efento.examples.yaml"):
        shutil.copy(PARSERS / name, parsers / name)
    return tmp_path


@pytest.fixture
def stack(workdir: Path) -> Iterator[tuple[UpProcess, UpPorts]]:
    """`preservarium up` started in `workdir` on free ports; killed if a test leaves it."""
    ports = UpPorts(data_dir=workdir / "data")
    up = UpProcess(cwd=workdir, env=ports.env(), args=ports.args())
    try:
        yield up, ports
    finally:
        up.kill()


def simulate(ports: UpPorts, *args: str) -> tuple[int, str, str]:
    env = {**ports.env(), "PRESERVARIUM_KAFKA_BOOTSTRAP": f"127.0.0.1:{ports.kafka}"}
    gateway = f"127.0.0.1:{ports.coap}"
    done = run_cli("simulate", "efento", "--gateway", gateway, *args, env=env, inherit=False)
    return done.returncode, done.stdout, done.stderr


def metrics_served(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return bool(response.status == 200)


class TestUp:
    def test_runs_simulates_and_stops_on_sigint(
        self, stack: tuple[UpProcess, UpPorts], workdir: Path
    ) -> None:
        up, ports = stack
        pids = up.wait_ready()
        assert set(pids) == {"kafka", "sandbox", "gateway"}
        started = descendants(up.process.pid)
        assert set(pids.values()) <= started
        # The shipped parser of the working directory only; SQLite in the data directory.
        assert any(re.search(r"parsers\s+efento v1 \(uploaded\)$", line) for line in up.lines)
        assert (workdir / "data" / "preservarium.db").is_file()
        assert not (workdir / "var").exists()
        assert metrics_served(ports.gateway_metrics) and metrics_served(ports.sandbox_metrics)

        code, out, err = simulate(ports, "--devices", "2", "--count", "2", "--interval", "0.2")

        assert code == 0, out + err
        readings = [m.groups() for m in map(MEASUREMENT.match, out.splitlines()) if m]
        assert sorted(device for device, *_ in readings) == 2 * ["282c02000001"] + 2 * [
            "282c02000002"
        ], out
        assert {kind for _, kind, _, _ in readings} == {"CON", "NON"}
        for _, _, temperature, humidity in readings:
            assert 10.0 <= float(temperature) <= 35.0 and 10 <= int(humidity) <= 90
        assert "282c02000001 i CON 2.01 → parsed: device info" in out, out
        assert "282c02000002 t CON 2.01 time" in out, out
        assert "8 contacts: 8 answered 2.xx, 8 parsed, 0 failed" in err, err

        started |= descendants(up.process.pid)
        began = time.monotonic()
        assert up.finish(signal.SIGINT, timeout_s=15) == 0, up.output
        assert time.monotonic() - began < 15
        assert alive(started) == set(), up.output
        assert "Traceback" not in up.output

    def test_a_service_that_dies_stops_the_rest(self, stack: tuple[UpProcess, UpPorts]) -> None:
        up, _ = stack
        pids = up.wait_ready()
        started = descendants(up.process.pid)

        os.kill(pids["gateway"], signal.SIGKILL)

        assert up.finish(None, timeout_s=15) == 1, up.output
        assert alive(started) == set(), up.output
        assert "last lines of gateway:" in up.lines
        assert up.errors[-1] == "error: gateway was killed by SIGKILL"


class TestPortInUse:
    @pytest.mark.parametrize("protocol", ["udp", "tcp"])
    def test_one_line_and_exit_2(self, protocol: str, workdir: Path) -> None:
        ports = UpPorts(data_dir=workdir / "data")
        kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
        taken = ports.coap if protocol == "udp" else ports.kafka
        with socket.socket(socket.AF_INET, kind) as holder:
            holder.bind(("127.0.0.1", taken))
            if protocol == "tcp":
                holder.listen()
            done = preservarium("up", *ports.args(), env=ports.env(), cwd=workdir)
        assert done.returncode == 2
        assert done.stderr.splitlines() == [
            f"error: port {taken}/{protocol} is in use: is another preservarium up running?"
        ]
        assert not (workdir / "data").exists()  # nothing was started


class TestSimulateWithoutGateway:
    def test_one_line_and_exit_2(self) -> None:
        ports = UpPorts()  # nothing listens on any of them
        code, out, err = simulate(ports, "--count", "1")
        assert code == 2
        assert out == ""
        assert err.splitlines() == [
            f"error: no answer from the gateway at 127.0.0.1:{ports.coap}: "
            "is preservarium up running?"
        ]
