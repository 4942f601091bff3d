"""Checking, before anything starts, that every port the stack will listen on is free."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from preservarium_tools.embedded.errors import PortInUseError

Protocol = Literal["tcp", "udp"]


@dataclass(frozen=True, slots=True)
class Port:
    """One port a service of the stack will bind."""

    host: str
    port: int
    protocol: Protocol = "tcp"

    def __str__(self) -> str:
        return f"{self.port}/{self.protocol}"


def ensure_free(ports: Iterable[Port]) -> None:
    """Raise PortInUseError for the first port that cannot be bound now (port 0 is skipped)."""
    for port in ports:
        if port.port and not _bindable(port):
            raise PortInUseError(port.port, port.protocol)


def _bindable(port: Port) -> bool:
    family = socket.AF_INET6 if ":" in port.host else socket.AF_INET
    kind = socket.SOCK_DGRAM if port.protocol == "udp" else socket.SOCK_STREAM
    with socket.socket(family, kind) as sock:
        if port.protocol == "tcp":
            # Servers set SO_REUSEADDR, so a port in TIME_WAIT is free for them; a listening
            # socket still makes this bind fail. UDP must not set it: it would share the port.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((port.host, port.port))
        except OSError as exc:
            # Any other failure (an address not on this host) is the service's to report.
            return exc.errno != errno.EADDRINUSE
    return True
