"""What each of several gateway processes does, and the settings that tell it so.

Every process serves the CoAP port: the kernel spreads datagrams over the sockets that
share it (SO_REUSEPORT) by source address and port, so a device stays on one process and
its retransmissions meet the deduplication that saw the original. Every process also
runs what scales with it: the command consumer (the group spreads the partitions; more
processes than partitions leave some idle), the command claims (the database decides
which process sends a command, as it does for two gateways), the last-seen flushes
(each process writes the devices it saw; the later contact wins) and the directory.

Some things must happen once, or bind a port that cannot be shared:

- the operator API and console (a TCP port; its replay runs and event streams are
  state of one process): process 0 only;
- the DTLS listener: process 0 only. Its port is deliberately not shared (another
  socket could silently take half of the handshakes), and one process holds every
  DTLS session, so a device's session never meets a process that has not seen it;
- the metrics endpoint: the parent serves `PRESERVARIUM_METRICS_PORT` and gathers each
  child's metrics from a private loopback port, each series labelled with `process`,
  so Prometheus scrapes one target per host as before;
- migrations: the parent applies them once before the children start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from preservarium.settings import ENV_PREFIX

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class ProcessRole:
    """One gateway process of several: its index and what it serves besides CoAP."""

    index: int
    metrics_port: int  # private, on loopback; 0: metrics off
    serves_api: bool
    serves_dtls: bool

    @classmethod
    def plan(cls, metrics_ports: Sequence[int]) -> list[ProcessRole]:
        """One role per process, in index order; process 0 takes the singletons."""
        return [
            cls(index=index, metrics_port=port, serves_api=index == 0, serves_dtls=index == 0)
            for index, port in enumerate(metrics_ports)
        ]

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """The child's environment: `base` with the settings its role overrides."""
        env = dict(base)
        env[ENV_PREFIX + "GATEWAY_PROCESSES"] = "1"  # a child never starts children
        env[ENV_PREFIX + "DB_AUTO_MIGRATE"] = "0"  # the parent has migrated
        env[ENV_PREFIX + "METRICS_PORT"] = str(self.metrics_port)
        if not self.serves_api:
            env[ENV_PREFIX + "API_LISTEN"] = ""
        if not self.serves_dtls:
            env[ENV_PREFIX + "COAPS_BIND"] = ""
        return env
