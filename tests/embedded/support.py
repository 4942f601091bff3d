"""Running `preservarium up` as a subprocess, and finding the processes it started."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.cli import BIN
from tests.support.net import free_port

READY = "preservarium is up"
PIDS = re.compile(r"processes\s+pids (.*)")


@dataclass(frozen=True)
class UpPorts:
    """Free ports for one stack."""

    coap: int = field(default_factory=lambda: free_port(socket.SOCK_DGRAM))
    coaps: int = field(default_factory=lambda: free_port(socket.SOCK_DGRAM))
    kafka: int = field(default_factory=free_port)
    sandbox: int = field(default_factory=free_port)
    api: int = field(default_factory=free_port)
    gateway_metrics: int = field(default_factory=free_port)
    sandbox_metrics: int = field(default_factory=free_port)
    # None: the run's own PRESERVARIUM_DATA_DIR (tests/conftest.py), never the user's.
    data_dir: Path | None = None

    def env(self) -> dict[str, str]:
        """The environment `up` and its clients need, with no other PRESERVARIUM_* set."""
        clean = {k: v for k, v in os.environ.items() if not k.startswith("PRESERVARIUM_")}
        data_dir = self.data_dir or Path(os.environ["PRESERVARIUM_DATA_DIR"])
        return {
            **clean,
            "PRESERVARIUM_DATA_DIR": str(data_dir),
            "PRESERVARIUM_COAP_BIND": f"127.0.0.1:{self.coap}",
            "PRESERVARIUM_COAPS_BIND": f"127.0.0.1:{self.coaps}",
            "PRESERVARIUM_SANDBOX_LISTEN": f"127.0.0.1:{self.sandbox}",
            "PRESERVARIUM_SANDBOX_ADDR": f"127.0.0.1:{self.sandbox}",
            "PRESERVARIUM_SANDBOX_WORKERS": "1",
            "PRESERVARIUM_API_LISTEN": f"127.0.0.1:{self.api}",
        }

    def args(self) -> list[str]:
        """`up`'s own options."""
        return [
            "--kafka-port", str(self.kafka),
            "--gateway-metrics-port", str(self.gateway_metrics),
            "--sandbox-metrics-port", str(self.sandbox_metrics),
            "--grace", "5",
        ]  # fmt: skip


def preservarium(
    *args: str, env: dict[str, str], cwd: Path | None = None, timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    """`preservarium ARGS...` with exactly `env` (run_cli would add the caller's)."""
    return subprocess.run(
        [str(BIN / "preservarium"), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


class UpProcess:
    """`preservarium up` in the background, its output collected line by line."""

    def __init__(self, *, cwd: Path, env: dict[str, str], args: list[str]) -> None:
        self.process = subprocess.Popen(
            [str(BIN / "preservarium"), "up", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.lines)),
            threading.Thread(target=self._read, args=(self.process.stderr, self.errors)),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: object, into: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            into.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        """Everything printed so far, stdout then stderr."""
        return "\n".join([*self.lines, *self.errors])

    def wait_ready(self, timeout_s: float = 40.0) -> dict[str, int]:
        """Wait for the summary; return the service pids it names."""
        deadline = time.monotonic() + timeout_s
        while not any(READY in line for line in self.lines):
            assert self.process.poll() is None, f"up exited early:\n{self.output}"
            assert time.monotonic() < deadline, f"up not ready in {timeout_s} s:\n{self.output}"
            time.sleep(0.1)
        while not (found := [m for m in map(PIDS.search, self.lines) if m is not None]):
            assert time.monotonic() < deadline, self.output
            time.sleep(0.05)
        pairs = found[0].group(1).split(", ")
        return {name: int(pid) for name, pid in (pair.split() for pair in pairs)}

    def finish(self, signum: signal.Signals | None, timeout_s: float) -> int:
        """Send `signum` (if any) and wait for the exit; its status."""
        if signum is not None:
            self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"up did not exit in {timeout_s} s:\n{self.output}") from None
        self._close()
        return code

    def kill(self) -> None:
        """Last resort for a failed test: no stray stack."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._close()

    def _close(self) -> None:
        for reader in self._readers:
            reader.join(timeout=5)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def parent_of(pid: int) -> int | None:
    """The parent pid of a live (non-zombie) process, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after the last one.
    state, ppid = stat.rpartition(")")[2].split()[:2]
    return None if state in ("Z", "X") else int(ppid)


def descendants(root: int) -> set[int]:
    """Every live process under `root`."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = parent_of(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    """Those of `pids` still running."""
    return {pid for pid in pids if parent_of(pid) is not None}
