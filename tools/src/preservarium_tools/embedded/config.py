"""What the embedded stack runs, where: one value derived from the settings at the edge.

`preservarium up` follows the contract's defaults with three differences that make a
laptop setup work out of the box: the gateway binds 127.0.0.1 (not 0.0.0.0) and serves
the Efento routes unless PRESERVARIUM_COAP_BIND / PRESERVARIUM_COAP_ROUTES say otherwise,
and a bundled broker is started unless PRESERVARIUM_KAFKA_BOOTSTRAP names a Kafka.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from preservarium.errors import ConfigError
from preservarium.settings import (
    DEFAULT_GATEWAY_METRICS_PORT,
    DEFAULT_SANDBOX_METRICS_PORT,
    ENV_PREFIX,
    DeviceAuthMode,
    HostPort,
    Settings,
)

from preservarium_tools.embedded.ports import Port
from preservarium_tools.embedded.readiness import grpc_target, local

Service = Literal["sandbox", "gateway"]

EFENTO_ROUTES = {"m": "efento", "i": "efento", "c": "efento", "t": "efento"}
DEFAULT_COAP_BIND = HostPort("127.0.0.1", 5683)
DEFAULT_COAPS_BIND = HostPort("127.0.0.1", 5684)
# The services default to `required`; the embedded stack is for trying things out, so
# `simulate` and unregistered devices work (credentialed devices must still present them).
DEFAULT_DEVICE_AUTH = DeviceAuthMode.OPTIONAL
DEFAULT_KAFKA_PORT = 9092
BROKER_HOST = "127.0.0.1"
PROGRAMS: dict[Service, str] = {
    "sandbox": "preservarium-sandbox",
    "gateway": "preservarium-gateway",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class UpOptions:
    """The command-line choices of `preservarium up`."""

    kafka_port: int = DEFAULT_KAFKA_PORT
    parsers_dir: Path | None = None
    gateway_metrics_port: int | None = None
    sandbox_metrics_port: int | None = None
    grace_s: float = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class StackTimings:
    """How long each service may take to become ready, and to stop."""

    grace_s: float = 10.0
    kafka_connect_s: float = 10.0
    sandbox_ready_s: float = 60.0
    # One check of a shipped parser (a compile or an example); the first compiles it cold.
    sandbox_call_s: float = 10.0
    gateway_ready_s: float = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class StackConfig:
    """Everything the embedded stack needs to start, as plain values."""

    database_url: str
    kafka_bootstrap: str
    broker_port: int | None
    coap_bind: HostPort
    coap_routes: Mapping[str, str]
    coaps_bind: HostPort | None
    device_auth: DeviceAuthMode
    api_listen: HostPort | None = None  # the gateway's operator API; None: off
    sandbox_listen: HostPort
    sandbox_addr: str
    metrics_ports: Mapping[Service, int]
    topic_prefix: str
    parsers_dir: Path | None
    bin_dir: Path
    environ: Mapping[str, str] = field(default_factory=dict)
    timings: StackTimings = field(default_factory=StackTimings)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        options: UpOptions,
        *,
        environ: Mapping[str, str],
        bin_dir: Path,
        parsers_dir: Path | None,
    ) -> StackConfig:
        """The stack the settings and options describe (ConfigError for a bad mix)."""
        explicit = settings.model_fields_set
        external_kafka = "kafka_bootstrap" in explicit
        listen = settings.sandbox_listen
        return cls(
            database_url=settings.database_url,
            kafka_bootstrap=settings.kafka_bootstrap
            if external_kafka
            else f"{BROKER_HOST}:{options.kafka_port}",
            broker_port=None if external_kafka else options.kafka_port,
            coap_bind=settings.coap_bind if "coap_bind" in explicit else DEFAULT_COAP_BIND,
            coap_routes=settings.coap_routes if "coap_routes" in explicit else EFENTO_ROUTES,
            coaps_bind=settings.coaps_bind if "coaps_bind" in explicit else DEFAULT_COAPS_BIND,
            device_auth=settings.device_auth if "device_auth" in explicit else DEFAULT_DEVICE_AUTH,
            api_listen=settings.api_listen,
            sandbox_listen=listen,
            sandbox_addr=settings.sandbox_addr
            if "sandbox_addr" in explicit
            else grpc_target(local(listen)),
            metrics_ports=metrics_ports(settings.metrics_port, options),
            topic_prefix=settings.topic_prefix,
            parsers_dir=parsers_dir,
            bin_dir=bin_dir,
            environ=dict(environ),
            timings=StackTimings(grace_s=options.grace_s),
        )

    @property
    def embedded_kafka(self) -> bool:
        """True when the stack runs the bundled broker (no Kafka was named)."""
        return self.broker_port is not None

    def ports(self) -> list[Port]:
        """Every port the stack's own processes will bind."""
        ports = [Port(self.coap_bind.host, self.coap_bind.port, "udp")]
        if self.coaps_bind is not None:
            ports.append(Port(self.coaps_bind.host, self.coaps_bind.port, "udp"))
        if self.broker_port is not None:
            ports.append(Port(BROKER_HOST, self.broker_port))
        ports.append(Port(self.sandbox_listen.host, self.sandbox_listen.port))
        if self.api_listen is not None:
            ports.append(Port(self.api_listen.host, self.api_listen.port))
        # The metrics endpoints listen on every interface.
        ports += [Port("0.0.0.0", port) for port in self.metrics_ports.values()]
        return ports

    def child_env(self, service: Service) -> dict[str, str]:
        """The environment of one service: the caller's, with the stack's choices on top."""
        routes = ",".join(f"{route}={kind}" for route, kind in self.coap_routes.items())
        chosen = {
            "DATABASE_URL": self.database_url,
            "KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "TOPIC_PREFIX": self.topic_prefix,
            "SANDBOX_LISTEN": str(self.sandbox_listen),
            "SANDBOX_ADDR": self.sandbox_addr,
            "COAP_BIND": str(self.coap_bind),
            "COAP_ROUTES": routes,
            "COAPS_BIND": "" if self.coaps_bind is None else str(self.coaps_bind),
            "API_LISTEN": "" if self.api_listen is None else str(self.api_listen),
            "DEVICE_AUTH": self.device_auth.value,
            "METRICS_PORT": str(self.metrics_ports[service]),
            # `up` has migrated already; two services migrating at once would race.
            "DB_AUTO_MIGRATE": "0",
        }
        return {
            **self.environ,
            **{ENV_PREFIX + key: value for key, value in chosen.items()},
            "PYTHONUNBUFFERED": "1",
        }


def metrics_ports(setting: int | None, options: UpOptions) -> dict[Service, int]:
    """Each service's metrics port: the options, else PRESERVARIUM_METRICS_PORT N as N and
    N + 1 (0 turns both off), else 9464 and 9465."""
    if setting is None:
        gateway, sandbox = DEFAULT_GATEWAY_METRICS_PORT, DEFAULT_SANDBOX_METRICS_PORT
    elif setting == 0:
        gateway = sandbox = 0
    elif setting < 65535:
        gateway, sandbox = setting, setting + 1
    else:
        raise ConfigError(
            f"{ENV_PREFIX}METRICS_PORT: up needs two ports, {setting} and the next one"
        )
    if options.gateway_metrics_port is not None:
        gateway = options.gateway_metrics_port
    if options.sandbox_metrics_port is not None:
        sandbox = options.sandbox_metrics_port
    return {"gateway": gateway, "sandbox": sandbox}
