"""Free ports on loopback, taken below the kernel's ephemeral range.

A port found by binding port 0 comes from the ephemeral range, which the kernel also
hands to every outgoing connection: between the moment a test picks it and the moment
its server binds it, or after that server is gone and the test checks the port was given
back, another worker's client can hold it as its source port. CI saw exactly that
(`test_up_ends`: "port 37841/tcp is in use" with every process of the stack gone).
Below the range the kernel never hands a port out on its own, and each pytest-xdist
worker draws from its own slice there, so two workers never pick the same port.
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

PORT_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
FLOOR = 10_000  # under it: well-known services (PostgreSQL's 5432, brokers' 9092, ...)
MIN_SLICES = 16  # more when the run has more workers (PYTEST_XDIST_WORKER_COUNT)
MIN_SLICE = 256


def ephemeral_floor() -> int:
    """The lowest port the kernel gives out on its own (Linux; IANA's 49152 elsewhere)."""
    try:
        return int(PORT_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 49_152


def slices(workers: int | None = None) -> int:
    """How many slices [FLOOR, the ephemeral floor) is cut into: one per worker, one for
    the run's own process (the serial part runs there), at least MIN_SLICES."""
    if workers is None:
        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    return max(MIN_SLICES, workers + 1)


def worker_slice(
    worker: str | None = None, floor: int | None = None, workers: int | None = None
) -> range:
    """This process's ports: its xdist worker's slice of [FLOOR, the ephemeral floor);
    the last slice is a run's without workers. Empty when there is no room below."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "") if worker is None else worker
    count = slices(workers)
    number = worker[2:]
    index = count - 1
    if worker.startswith("gw") and number.isdigit():
        index = int(number)
        if index >= count - 1:  # PYTEST_XDIST_WORKER_COUNT would have made room
            raise RuntimeError(f"worker {worker} has no slice of the {count} port ranges")
    span = ((ephemeral_floor() if floor is None else floor) - FLOOR) // count
    if span < MIN_SLICE:
        return range(0)
    start = FLOOR + index * span
    return range(start, start + span)


class _Picker:
    """Walks its slice from a random start, skipping ports someone holds now."""

    def __init__(self, ports: range) -> None:
        self.ports = ports
        self.cursor = random.randrange(len(ports)) if ports else 0

    def take(self) -> int:
        for _ in range(len(self.ports)):
            port = self.ports[self.cursor]
            self.cursor = (self.cursor + 1) % len(self.ports)
            if bindable(port):
                return port
        return ephemeral_port()  # the slice is exhausted, or this host has no room below


_picker: _Picker | None = None


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nobody holds right now for TCP or UDP, and no one else in the run will pick.

    `kind` is kept for the callers' reading: the port is checked free for both protocols.
    """
    del kind
    global _picker
    if _picker is None:
        _picker = _Picker(worker_slice())
    return _picker.take()


def bindable(port: int) -> bool:
    """True when a TCP and a UDP socket can both bind `port` on every address now."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                return False
    return True


def ephemeral_port() -> int:
    """A port the kernel picks (from its ephemeral range), free for UDP too."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if bindable(port):
            return port
