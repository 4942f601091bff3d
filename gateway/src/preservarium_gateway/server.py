"""The gateway assembled: database, directory, Kafka, sandbox client, commands, CoAP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from preservarium.db.engine import make_engine
from preservarium.db.migrate import upgrade
from preservarium.errors import PreservariumError
from preservarium.identity import SecretBox
from preservarium.lifecycle import AsyncLifecycle
from preservarium.metrics import MetricsEndpoint
from preservarium.repositories import (
    SQLCommandRepository,
    SQLCredentialRepository,
    SQLDeviceActivityRepository,
    SQLDeviceRepository,
    SQLReplayWindowRepository,
)
from preservarium.runtime import RuntimeMetrics
from preservarium.sandbox_client import SandboxClient
from preservarium.settings import HostPort
from preservarium.supervisor import Supervisor

from preservarium_gateway import coap_tuning
from preservarium_gateway.admission import Admission
from preservarium_gateway.api import ApiContext, create_app
from preservarium_gateway.api.replay_runs import ReplayRuns, replay_runs
from preservarium_gateway.api.server import ApiServer
from preservarium_gateway.authn import DeviceAuthenticator
from preservarium_gateway.coap import GatewaySite
from preservarium_gateway.commands import CommandDesk
from preservarium_gateway.config import GatewayConfig
from preservarium_gateway.consumer import CommandConsumer
from preservarium_gateway.contact import ContactPipeline
from preservarium_gateway.datagrams import DatagramGuard
from preservarium_gateway.dedup import BoundedDeduplication
from preservarium_gateway.directory import DeviceDirectory
from preservarium_gateway.dtls import DtlsPskListener
from preservarium_gateway.errors import GatewayStartError
from preservarium_gateway.kafka import KafkaPublisher
from preservarium_gateway.last_seen import LastSeenRecorder
from preservarium_gateway.log_throttle import LogThrottle
from preservarium_gateway.metrics import GatewayMetrics
from preservarium_gateway.oscore_contexts import OscoreContexts
from preservarium_gateway.oscore_layer import OscoreEndpoint
from preservarium_gateway.psk_keyring import PskKeyring
from preservarium_gateway.types import ParserService

log = logging.getLogger("preservarium.gateway")
# aiocoap logs what senders do (a code that does not fit its type, a failed render): its
# lines go through a LogThrottle, so a sender cannot write the log.
AIOCOAP_LOGGER = "preservarium.gateway.aiocoap"
API_SANDBOX_TIMEOUT_S = 10.0


class GatewayServer(AsyncLifecycle):
    """Owns every part of the gateway; start() in order, stop() in reverse, idempotent."""

    def __init__(self, config: GatewayConfig, *, parsers: ParserService | None = None) -> None:
        self.config = config
        limits = config.limits
        self.metrics = GatewayMetrics()
        self.runtime = RuntimeMetrics(self.metrics.registry)
        # Every background loop runs under it; while one is down the probe says unhealthy.
        self.supervisor = Supervisor(
            on_restart=self.metrics.tasks.restarted,
            on_health=lambda healthy: self.metrics.tasks.healthy.set(int(healthy)),
        )
        self._engine = make_engine(config.database_url)
        self._credentials = SQLCredentialRepository(
            self._engine, secrets=SecretBox(config.secret_keys)
        )
        # OSCORE contexts by kid, read on first use; the directory's reloads prune them.
        self.oscore_contexts = OscoreContexts(
            source=self._credentials,
            windows=SQLReplayWindowRepository(self._engine),
            unknown_ttl_s=limits.unknown_device_ttl_s,
            lookups_per_s=limits.unknown_lookups_per_s,
        )
        self.directory = DeviceDirectory(
            SQLDeviceRepository(self._engine),
            refresh_s=limits.directory_refresh_s,
            watch_s=limits.directory_watch_s,
            unknown_ttl_s=limits.unknown_device_ttl_s,
            lookups_per_s=limits.unknown_lookups_per_s,
            credentials=self._credentials,
            supervisor=self.supervisor,
            on_reload=self.oscore_contexts.retain,
        )
        self._throttle = LogThrottle(interval_s=limits.refusal_log_interval_s)
        self.admission = Admission(
            authenticator=DeviceAuthenticator(mode=config.device_auth, directory=self.directory),
            limits=limits,
            metrics=self.metrics,
            throttle=self._throttle,
            marks=self._credentials,
        )
        self.publisher = KafkaPublisher(
            config.kafka_bootstrap,
            timeout_s=limits.publish_timeout_s,
            client_id=f"preservarium-gateway-{config.instance_id}",
            on_publish=self.metrics.published,
            topics=config.topics.all(),
            partitions=limits.topic_partitions,
            supervisor=self.supervisor,
        )
        self.sandbox: ParserService = parsers or SandboxClient(
            config.sandbox_addr, timeout_s=limits.sandbox_timeout_s,
            streams=limits.sandbox_streams, supervisor=self.supervisor,
            on_batch=self.metrics.sandbox_batch.observe,
        )  # fmt: skip
        self.desk = CommandDesk(
            repository=SQLCommandRepository(self._engine),
            publisher=self.publisher,
            topics=config.topics,
            limits=limits,
            claimer=config.instance_id,
            on_status=lambda status: self.metrics.commands.labels(status).inc(),
            supervisor=self.supervisor,
            sandbox=self.sandbox,
            directory=self.directory,
            metrics=self.metrics,
        )
        self.consumer = CommandConsumer(
            bootstrap=config.kafka_bootstrap,
            topic=config.topics.command_request,
            group=config.consumer_group,
            desk=self.desk,
            limits=limits,
            supervisor=self.supervisor,
        )
        # When each device was last seen: held in memory, written in batches.
        self.last_seen = LastSeenRecorder(
            store=SQLDeviceActivityRepository(self._engine),
            flush_s=limits.last_seen_flush_s,
            max_entries=limits.last_seen_entries,
            metrics=self.metrics,
            supervisor=self.supervisor,
        )
        self.pipeline = ContactPipeline(
            publisher=self.publisher,
            sandbox=self.sandbox,
            desk=self.desk,
            directory=self.directory,
            topics=config.topics,
            limits=limits,
            metrics=self.metrics,
            admission=self.admission,
            last_seen=self.last_seen,
        )
        self.site = GatewaySite(
            routes=config.routes,
            directory=self.directory,
            pipeline=self.pipeline,
            admission=self.admission,
            limits=limits,
            metrics=self.metrics,
            healthy=lambda: self.supervisor.healthy,
            oscore=OscoreEndpoint(
                contexts=self.oscore_contexts,
                admission=self.admission,
                metrics=self.metrics,
                retry_after_s=limits.retry_after_s,
            ),
        )
        self._metrics_endpoint = MetricsEndpoint(
            self.metrics.registry, port=config.metrics_port, host=config.metrics_host
        )
        self._context: Any = None
        self._dedup: list[BoundedDeduplication] = []
        # The DTLS port serves the same site: a PSK session names its device.
        self.dtls: DtlsPskListener | None = None
        if config.coaps_bind is not None:
            self.dtls = DtlsPskListener(
                site=self.site,
                bind=config.coaps_bind,
                keyring=PskKeyring(source=self._credentials),
            )
        self.api: ApiServer | None = None
        self.replay_runs: ReplayRuns | None = None
        # The API runs unsaved sources with a longer deadline than a contact's parse.
        self._api_sandbox = SandboxClient(config.sandbox_addr, timeout_s=API_SANDBOX_TIMEOUT_S)
        if config.api_listen is not None:
            self.api = self._api(config, config.api_listen)
        self._gauges: asyncio.Task[None] | None = None
        self.port: int | None = None

    def _api(self, config: GatewayConfig, listen: HostPort) -> ApiServer:
        """The operator API, on the gateway's database, publisher and metrics."""
        sandbox = self._api_sandbox
        self.replay_runs = replay_runs(
            engine=self._engine, sandbox=sandbox, bootstrap=config.kafka_bootstrap,
            topics=config.topics, metrics=self.metrics, supervisor=self.supervisor,
        )  # fmt: skip
        context = ApiContext(
            engine=self._engine, secrets=SecretBox(config.secret_keys),
            publish=self.publisher.publish, topics=config.topics,
            kafka_bootstrap=config.kafka_bootstrap, sandbox=sandbox, metrics=self.metrics,
            replay_runs=self.replay_runs,
        )  # fmt: skip
        return ApiServer(app=create_app(context), listen=listen, supervisor=self.supervisor)

    async def start(self) -> None:
        """Start the parts a contact needs, then open the CoAP port(s)."""
        try:
            self.config.check()
        except ValueError as exc:
            raise GatewayStartError(str(exc)) from None
        if self.api is not None:
            try:
                self.api.open()  # a taken port fails here, before any client connects
            except GatewayStartError:
                await self.stop()
                raise
        try:
            if self.config.auto_migrate:
                await upgrade(self.config.database_url)
            await self.directory.start()
            await self.desk.start()
        except PreservariumError as exc:
            await self.stop()
            raise GatewayStartError(f"cannot read the database: {exc}") from exc
        await self.publisher.start()
        await self.sandbox.start()
        await self.consumer.start()
        await self.last_seen.start()
        bind = self.config.bind
        try:
            # UDP only: aiocoap would also open CoAP over TCP/TLS/WebSockets by default.
            coap_tuning.install()
            logging.getLogger(AIOCOAP_LOGGER).addFilter(self._throttle)
            self._context = await coap_tuning.GatewayContext.create_server_context(
                self.site, bind=(bind.host, bind.port), transports=["udp6"],
                loggername=AIOCOAP_LOGGER,
            )  # fmt: skip
        except OSError as exc:
            await self.stop()
            raise GatewayStartError(f"cannot listen on {bind} (udp): {exc.strerror}") from exc
        self._dedup = []
        self._guard_coap(self._context)
        self.port = bind.port or 5683
        await self._start_dtls()
        if self.api is not None:
            await self._api_sandbox.start()
            try:
                await self.api.start()
            except GatewayStartError:
                await self.stop()
                raise
        try:
            self._metrics_endpoint.start()
        except OSError as exc:
            await self.stop()
            raise GatewayStartError(
                f"cannot serve metrics on port {self.config.metrics_port}: {exc.strerror}"
            ) from exc
        self._gauges = self.supervisor.spawn("gateway-gauges", self._update_gauges)
        self.runtime.start(self.supervisor)
        config = self.config
        where = {"coap_bind": str(bind), "coaps_bind": str(config.coaps_bind),
                 "api_listen": str(config.api_listen)}  # fmt: skip
        log.info("gateway serving", extra={**where, "routes": config.routes,
                 "device_auth": config.device_auth})  # fmt: skip

    async def _start_dtls(self) -> None:
        if self.dtls is None:
            return
        try:
            await self.dtls.start()
        except (GatewayStartError, PreservariumError) as exc:
            await self.stop()
            if isinstance(exc, GatewayStartError):
                raise
            raise GatewayStartError(f"cannot load the DTLS keys: {exc}") from exc
        # What comes out of a DTLS record is sorted and deduplicated as on the plain port.
        self._guard_coap(self.dtls.context)

    def _guard_coap(self, context: Any) -> None:
        limits = self.config.limits
        DatagramGuard.install(
            context, max_bytes=limits.max_datagram_bytes, payload_bytes=limits.payload_bytes,
            metrics=self.metrics, throttle=self._throttle,
        )  # fmt: skip
        self._dedup += BoundedDeduplication.install(
            context, lifetime_s=limits.dedup_lifetime_s, max_entries=limits.dedup_max_entries,
            source_entries=limits.dedup_source_entries,
        )  # fmt: skip

    async def _update_gauges(self) -> None:
        while True:
            self.metrics.pending_devices.set(len(self.desk.index))
            self.metrics.dedup_entries.set(sum(len(cache) for cache in self._dedup))
            self.metrics.oscore_contexts.set(len(self.oscore_contexts))
            await asyncio.sleep(1.0)

    @property
    def dedup_entries(self) -> int:
        """Deduplication entries held now."""
        return sum(len(cache) for cache in self._dedup)

    async def stop(self) -> None:
        """Stop taking contacts, let in-flight ones finish, then stop the rest."""
        context, self._context = self._context, None
        if context is not None:
            left = await self.site.drain(self.config.limits.drain_timeout_s)
            if left:
                log.warning("stopping with contacts in flight", extra={"in_flight": left})
            await context.shutdown()
        if self.dtls is not None:
            await self.dtls.stop()
        if self.api is not None:
            await self.api.stop()
        if self.replay_runs is not None:  # stored `interrupted`, resumable
            await self.replay_runs.stop()
        await self._api_sandbox.stop()
        await self.admission.drain()
        logging.getLogger(AIOCOAP_LOGGER).removeFilter(self._throttle)
        gauges, self._gauges = self._gauges, None
        if gauges is not None:
            gauges.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gauges
        await self.runtime.stop()
        self._metrics_endpoint.stop()
        await self.last_seen.stop()  # the contacts drained above are written too
        await self.consumer.stop()
        await self.desk.stop()
        await self.publisher.stop()
        await self.sandbox.stop()
        await self.directory.stop()
        await self._engine.dispose()
