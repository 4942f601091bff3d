"""The parent of several gateway processes: checks, migrates, serves metrics, supervises.

What runs once per host and what runs in every process is decided in `process_roles`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from preservarium.db.migrate import upgrade
from preservarium.errors import PreservariumError
from preservarium.metrics import MetricsEndpoint
from preservarium.settings import Settings
from prometheus_client import CollectorRegistry

from preservarium_gateway.config import GatewayConfig
from preservarium_gateway.errors import GatewayStartError
from preservarium_gateway.process_metrics import ChildMetricsCollector, ProcessMetrics
from preservarium_gateway.process_roles import LOOPBACK, ProcessRole
from preservarium_gateway.processes import GatewayProcesses

log = logging.getLogger("preservarium.gateway.processes")


def loopback_ports(count: int) -> list[int]:
    """`count` distinct TCP ports free on loopback now (for the children's metrics)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:  # all held at once, so the kernel hands out distinct ports
            sock.bind((LOOPBACK, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


async def prepare(config: GatewayConfig) -> None:
    """What the children would each do at start and must not race on: checks, migrations."""
    try:
        config.check()
    except ValueError as exc:
        raise GatewayStartError(str(exc)) from None
    if config.auto_migrate:
        try:
            await upgrade(config.database_url)
        except PreservariumError as exc:
            raise GatewayStartError(f"cannot migrate the database: {exc}") from exc
    if config.database_url.startswith("sqlite"):
        log.warning(
            "several gateway processes on SQLite: its writers take turns (a database lock), "
            "so use PostgreSQL for more than one process"
        )


async def serve_processes(settings: Settings, stop: asyncio.Event) -> None:
    """Run `settings.gateway_processes` gateway children until `stop` is set."""
    config = GatewayConfig.from_settings(settings)
    await prepare(config)
    count = settings.gateway_processes
    ports = loopback_ports(count) if config.metrics_port else [0] * count
    registry = CollectorRegistry()
    metrics = ProcessMetrics(registry)
    if config.metrics_port:
        registry.register(ChildMetricsCollector(ports))
    endpoint = MetricsEndpoint(registry, port=config.metrics_port, host=config.metrics_host)
    try:
        endpoint.start()
    except OSError as exc:
        raise GatewayStartError(
            f"cannot serve metrics on port {config.metrics_port}: {exc.strerror}"
        ) from exc
    # The children read their settings as this process did: from the same environment.
    processes = GatewayProcesses(
        roles=ProcessRole.plan(ports), env=dict(os.environ), metrics=metrics
    )
    log.info("gateway processes starting", extra={"processes": count,
             "coap_bind": str(config.bind), "metrics_port": config.metrics_port})  # fmt: skip
    try:
        async with processes:
            await stop.wait()
    finally:
        endpoint.stop()
        log.info("gateway processes stopped", extra={"processes": count})
