"""However `preservarium up` ends, its services end with it and give their ports back.

A real `up` each time, its output into a pipe as `up 2>&1 | tee up.log` would have it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO

import pytest
from preservarium_tools.embedded.ports import Port, ensure_free

from tests.embedded.support import PIDS, READY, UpPorts, alive, descendants
from tests.embedded.test_up import workdir  # noqa: F401  (a fixture)
from tests.support.cli import BIN

GONE_WITHIN_S = 20.0


class PipedUp:
    """`preservarium up` writing stdout and stderr into one pipe that this test reads."""

    def __init__(self, ports: UpPorts, cwd: Path) -> None:
        read_fd, write_fd = os.pipe()
        self.process = subprocess.Popen(
            [str(BIN / "preservarium"), "up", *ports.args()],
            cwd=cwd,
            env=ports.env(),
            stdin=subprocess.DEVNULL,
            stdout=write_fd,
            stderr=write_fd,
        )
        os.close(write_fd)
        self.reader: IO[str] = os.fdopen(read_fd, "r", errors="replace")
        self.lines: list[str] = []
        self._drain: threading.Thread | None = None

    def wait_ready(self) -> dict[str, int]:
        """Read until the summary names the services' pids."""
        for line in self.reader:
            self.lines.append(line.rstrip("\n"))
            found = PIDS.search(line)
            if found and any(READY in seen for seen in self.lines):
                pairs = found.group(1).strip().split(", ")
                return {name: int(pid) for name, pid in (pair.split() for pair in pairs)}
        raise AssertionError("up ended before it was ready:\n" + "\n".join(self.lines))

    def keep_reading(self) -> None:
        """Drain the pipe in the background (the reader stays: only `up` is signalled)."""
        self._drain = threading.Thread(target=self.reader.read, daemon=True)
        self._drain.start()

    def kill(self) -> None:
        """No stray `up`, and the pipe closed (its end comes when `up` is gone)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self._drain is not None:
            self._drain.join(timeout=5)
        self.reader.close()


def wait_gone(pids: set[int]) -> set[int]:
    deadline = time.monotonic() + GONE_WITHIN_S
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive(pids)


def stack_ports(ports: UpPorts) -> list[Port]:
    return [
        Port("127.0.0.1", ports.coap, "udp"),
        *(Port("127.0.0.1", port) for port in (ports.kafka, ports.sandbox, ports.api)),
        *(Port("0.0.0.0", port) for port in (ports.gateway_metrics, ports.sandbox_metrics)),
    ]


@pytest.mark.parametrize(
    "ending",
    ["reader_left_then_sigint", "SIGHUP", "SIGTERM", "SIGPIPE", "SIGKILL"],
)
def test_the_services_die_with_up(ending: str, workdir: Path) -> None:  # noqa: F811
    ports = UpPorts(data_dir=workdir / "data")
    up = PipedUp(ports, workdir)
    try:
        pids = up.wait_ready()
        started = descendants(up.process.pid)
        assert set(pids.values()) <= started and len(pids) == 3
        if ending == "reader_left_then_sigint":
            up.reader.close()  # tee died of the same Ctrl-C
            up.process.send_signal(signal.SIGINT)
        else:
            up.keep_reading()
            up.process.send_signal(signal.Signals[ending])
        if ending != "SIGKILL":
            assert up.process.wait(timeout=GONE_WITHIN_S) == 0
        assert wait_gone(started) == set()
        ensure_free(stack_ports(ports))  # raises PortInUseError for a port still held
    finally:
        up.kill()
        leftover = alive(descendants(up.process.pid))
        for pid in leftover:
            os.kill(pid, signal.SIGKILL)
