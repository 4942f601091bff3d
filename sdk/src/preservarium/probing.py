"""What the services' health probes share: one line out, exit 0 healthy and 1 for anything
else (Docker reads 0 as healthy and 1 as unhealthy; it reserves 2).

The probes run in the service images every few seconds, where the `preservarium` command
(typer, rich) is not installed: each service has its own probe script, and the command's
`probe` noun calls the same functions. Nothing here imports the database or Kafka code.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from preservarium.errors import PreservariumError
from preservarium.settings import HostPort, Settings, load_settings, parse_host_port

DEFAULT_TIMEOUT_S = 3.0
HEALTHY, UNHEALTHY = 0, 1
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})


def report(healthy: bool, line: str) -> NoReturn:
    """Print the probe's one line and exit with its status."""
    print(" ".join(line.split()), file=sys.stdout if healthy else sys.stderr)
    raise SystemExit(HEALTHY if healthy else UNHEALTHY)


def probe_settings() -> Settings:
    """The settings, or an unhealthy line naming the bad variable."""
    try:
        return load_settings()
    except PreservariumError as exc:
        report(False, str(exc))


def addresses(text: str) -> list[HostPort]:
    """`HOST:PORT[,HOST:PORT...]`, or an unhealthy line saying what is wrong."""
    try:
        return [parse_host_port(part) for part in text.split(",")]
    except ValueError as exc:
        report(False, f"bad address {text!r}: {exc}")


def local_address(bind: HostPort) -> HostPort:
    """Where a client on the same host reaches a server bound to `bind`."""
    return HostPort("127.0.0.1" if bind.host in WILDCARD_HOSTS else bind.host, bind.port)


class ProbeArguments(argparse.ArgumentParser):
    """argparse for a probe script: a usage error is an unhealthy line and exit 1, not 2
    (which Docker reserves)."""

    def error(self, message: str) -> NoReturn:
        """Report the usage error the probe way."""
        report(False, f"{self.prog}: {message}")

    def add_timeout(self) -> None:
        """The `--timeout SECONDS` option every probe has."""
        self.add_argument(
            "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="Seconds to wait."
        )
