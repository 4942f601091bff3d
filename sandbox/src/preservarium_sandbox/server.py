"""The sandbox service assembled: repository, catalog, pool, gRPC server, health, metrics."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]
from grpc_reflection.v1alpha import reflection
from preservarium.clock import Clock
from preservarium.db.engine import make_engine
from preservarium.db.migrate import upgrade
from preservarium.errors import PreservariumError
from preservarium.lifecycle import AsyncLifecycle
from preservarium.metrics import MetricsEndpoint
from preservarium.repositories import SQLParserRepository
from preservarium.runtime import RuntimeMetrics
from preservarium.sandbox.v1 import sandbox_pb2, sandbox_pb2_grpc
from preservarium.settings import DEFAULT_SANDBOX_METRICS_PORT, Settings
from preservarium.supervisor import Supervisor, SupervisorMetrics

from preservarium_sandbox.catalog import ParserCatalog
from preservarium_sandbox.limits import Limits, TrialLimits
from preservarium_sandbox.metrics import SandboxMetrics
from preservarium_sandbox.pool import WorkerPool
from preservarium_sandbox.quarantine import Quarantine, QuarantinePolicy
from preservarium_sandbox.service import SandboxService
from preservarium_sandbox.source_scan import scan_source
from preservarium_sandbox.trials import TrialRunner
from preservarium_sandbox.worker.hardening import make_not_dumpable

log = logging.getLogger("preservarium.sandbox")
SERVICE_NAME = sandbox_pb2.DESCRIPTOR.services_by_name["ParserSandbox"].full_name


class SandboxStartError(PreservariumError):
    """The sandbox could not start (port taken, database unreachable, workers failing)."""


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """What the sandbox server needs, read from the settings at the edge."""

    listen: str
    database_url: str
    workers: int
    limits: Limits
    metrics_port: int
    auto_migrate: bool = False
    spares: int = 1
    refresh_interval_s: float = 0.5
    quarantine: QuarantinePolicy = field(default_factory=QuarantinePolicy)
    trial: TrialLimits = field(default_factory=TrialLimits)
    # Calls (a ParseStream is one) served at once; past it gRPC answers RESOURCE_EXHAUSTED
    # at once, instead of holding every request a caller opens until memory runs out.
    max_concurrent_calls: int = 1024

    @classmethod
    def from_settings(cls, settings: Settings) -> SandboxConfig:
        """The configuration the environment describes."""
        return cls(
            listen=str(settings.sandbox_listen),
            database_url=settings.database_url,
            workers=settings.sandbox_workers,
            limits=Limits.from_settings(settings),
            metrics_port=settings.metrics_port_or(DEFAULT_SANDBOX_METRICS_PORT),
            auto_migrate=settings.db_auto_migrate,
        )


class SandboxServer(AsyncLifecycle):
    """Owns every part of the sandbox; start() and stop() in order, stop() idempotent."""

    def __init__(self, config: SandboxConfig, *, clock: Clock = time.monotonic) -> None:
        self.config = config
        self.metrics = SandboxMetrics()
        self.task_metrics = SupervisorMetrics(self.metrics.registry)
        self.runtime = RuntimeMetrics(self.metrics.registry)
        # The catalog's loops run under it; while one is down the health service says so.
        self.supervisor = Supervisor(
            on_restart=self.task_metrics.restarted, on_health=self._tasks_health
        )
        self._health_updates: set[asyncio.Task[None]] = set()
        self._engine = make_engine(config.database_url)
        self.catalog = ParserCatalog(
            SQLParserRepository(self._engine),
            refresh_interval_s=config.refresh_interval_s,
            on_lookup=self.metrics.source_lookup,
            supervisor=self.supervisor,
            scan=functools.partial(scan_source, limits=config.trial.scan),
        )
        self.pool = WorkerPool(
            size=config.workers,
            limits=config.limits,
            spares=config.spares,
            on_restart=lambda reason: self.metrics.worker_restarts.labels(reason).inc(),
            on_batch=self.metrics.worker_batch.observe,
        )
        # TestParser's workers: untested source never runs on those serving live traffic.
        self.trials = TrialRunner(
            pool=WorkerPool(
                size=config.trial.workers,
                limits=config.limits,
                spares=config.trial.spares,
                on_restart=lambda reason: self.metrics.worker_restarts.labels(
                    f"trial-{reason}"
                ).inc(),
            ),
            limits=config.limits,
            trial=config.trial,
        )
        # Quarantine's benches end by this clock (tests step it instead of waiting).
        self.quarantine = Quarantine(config.quarantine, clock=clock)
        self._health = health_aio.HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._service: SandboxService | None = None
        self._metrics_endpoint = MetricsEndpoint(self.metrics.registry, port=config.metrics_port)
        self.port: int | None = None

    async def start(self) -> None:
        """Migrate if asked, warm the catalog, start workers, then serve."""
        # Our environment holds the database URL: no worker may read /proc/<us>/environ.
        make_not_dumpable()
        try:
            if self.config.auto_migrate:
                await upgrade(self.config.database_url)
            await self.catalog.start()
        except PreservariumError as exc:
            await self.stop()
            raise SandboxStartError(f"cannot read the parser repository: {exc}") from exc
        await self.pool.start()
        await self.trials.start()
        layers = self.pool.hardening
        missing = [name for name, on in layers.items() if on is False]
        log.log(
            logging.WARNING if missing else logging.INFO,
            "sandbox workers ready",
            extra={"workers": self.config.workers, "layers": layers, "inactive": missing},
        )
        server = grpc.aio.server(
            options=[
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", self.config.limits.request_bytes()),
            ],
            maximum_concurrent_rpcs=self.config.max_concurrent_calls,
        )
        self._service = service = SandboxService(
            catalog=self.catalog,
            pool=self.pool,
            trials=self.trials,
            quarantine=self.quarantine,
            limits=self.config.limits,
            metrics=self.metrics,
        )
        sandbox_pb2_grpc.add_ParserSandboxServicer_to_server(service, server)  # type: ignore[no-untyped-call]
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME),
            server,
        )  # fmt: skip
        try:
            self.port = server.add_insecure_port(self.config.listen)
        except RuntimeError as exc:
            await self.stop()
            raise SandboxStartError(f"cannot listen on {self.config.listen}: {exc}") from exc
        await server.start()
        self._server = server
        await self._publish_health()
        try:
            self._metrics_endpoint.start()
        except OSError as exc:
            await self.stop()
            raise SandboxStartError(
                f"cannot serve metrics on port {self.config.metrics_port}: {exc.strerror}"
            ) from exc
        self.runtime.start(self.supervisor)
        log.info("sandbox serving", extra={"listen": self.config.listen, "port": self.port})

    def _tasks_health(self, healthy: bool) -> None:
        self.task_metrics.healthy.set(int(healthy))
        if self._server is not None:
            task = asyncio.create_task(self._publish_health())
            self._health_updates.add(task)
            task.add_done_callback(self._health_updates.discard)

    async def _publish_health(self) -> None:
        """SERVING while every supervised loop runs (read now: updates may overtake)."""
        status = health_pb2.HealthCheckResponse.NOT_SERVING
        if self.supervisor.healthy:
            status = health_pb2.HealthCheckResponse.SERVING
        for name in ("", SERVICE_NAME):
            await self._health.set(name, status)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop taking calls, let in-flight calls finish, then stop the workers."""
        server, self._server = self._server, None
        if server is not None:
            await self._health.enter_graceful_shutdown()
            if self._service is not None:
                self._service.close_streams()
            await server.stop(grace_s)
        await self.runtime.stop()
        self._metrics_endpoint.stop()
        await self.trials.stop()
        await self.pool.stop()
        await self.catalog.stop()
        await self._engine.dispose()
