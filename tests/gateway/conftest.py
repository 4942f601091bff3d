"""A real gateway (UDP, broker, sandbox, database) for tests, with its topics followed."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from preservarium.contract.topics import Topics
from preservarium.settings import DeviceAuthMode, HostPort
from preservarium_gateway.config import GatewayConfig, GatewayLimits
from preservarium_gateway.server import GatewayServer
from preservarium_sandbox.server import SandboxServer
from preservarium_tools.coapwire import CoapClient
from preservarium_tools.embedded.broker import EmbeddedBroker

from tests.sandbox.conftest import sandbox_config
from tests.support.kafka import TopicReader, prefix
from tests.support.net import free_port
from tests.support.sqlite import SQLiteTemplate

ROUTES = {"m": "thermo", "t": "thermo"}


# Tests send many contacts from 127.0.0.1 as unauthenticated devices: the module's
# gateways run `optional` with no rate limits unless a test asks otherwise.
OPEN_LIMITS = {"device_rate_per_min": 0, "source_rate_per_min": 0, "auth_failures_per_min": 0}


def gateway_config(
    *,
    database_url: str,
    bootstrap: str,
    sandbox_addr: str,
    topic_prefix: str,
    device_auth: DeviceAuthMode = DeviceAuthMode.OPTIONAL,
    coaps_bind: HostPort | None = None,
    secret_keys: tuple[str, ...] = (),
    routes: dict[str, str] = ROUTES,
    **limits: Any,
) -> GatewayConfig:
    return GatewayConfig(
        bind=HostPort("127.0.0.1", free_port(socket.SOCK_DGRAM)),
        routes=routes,
        kafka_bootstrap=bootstrap,
        topics=Topics.with_prefix(topic_prefix),
        sandbox_addr=sandbox_addr,
        database_url=database_url,
        metrics_port=0,
        limits=dataclasses.replace(
            # A 2 s group session: the test broker forms a group in 1 s, not 5 s.
            GatewayLimits(commands_refresh_s=0.2, command_session_timeout_s=2.0),
            **{**OPEN_LIMITS, **limits},
        ),
        device_auth=device_auth,
        coaps_bind=coaps_bind,
        secret_keys=secret_keys,
        # One group per topic set: members of earlier tests must not slow the join.
        consumer_group=f"gw-{topic_prefix}",
    )


class Topology:
    """The topics of one gateway, followed from the start."""

    def __init__(self, bootstrap: str, topics: Topics, *, from_end: bool = False) -> None:
        self.topics = topics
        self.raw = TopicReader(bootstrap, topics.raw, from_end=from_end)
        self.parsed = TopicReader(bootstrap, topics.parsed, from_end=from_end)
        self.failed = TopicReader(bootstrap, topics.failed, from_end=from_end)
        self.status = TopicReader(bootstrap, topics.command_status, from_end=from_end)

    async def start(self) -> None:
        for reader in (self.raw, self.parsed, self.failed, self.status):
            await reader.start()

    async def stop(self) -> None:
        for reader in (self.raw, self.parsed, self.failed, self.status):
            await reader.stop()


@pytest.fixture(scope="module")
async def gw_db(tmp_path_factory: pytest.TempPathFactory, sqlite_template: SQLiteTemplate) -> str:
    return await sqlite_template.copy(tmp_path_factory.mktemp("gateway") / "gateway.db")


@pytest.fixture(scope="module")
async def gw_sandbox(gw_db: str) -> AsyncIterator[SandboxServer]:
    async with SandboxServer(sandbox_config(gw_db)) as server:
        yield server


@pytest.fixture(scope="module")
def gateway_options() -> dict[str, Any]:
    """What the module's gateway sets besides gateway_config's defaults (routes, limits):
    a test module overrides this fixture to get a gateway of its own kind."""
    return {}


@pytest.fixture(scope="module")
async def gateway(
    gw_db: str, gw_sandbox: SandboxServer, broker: EmbeddedBroker, gateway_options: dict[str, Any]
) -> AsyncIterator[GatewayServer]:
    config = gateway_config(
        database_url=gw_db, bootstrap=broker.bootstrap, sandbox_addr=gw_sandbox.config.listen,
        topic_prefix=prefix(), **gateway_options,
    )  # fmt: skip
    async with GatewayServer(config) as server:
        yield server


@pytest.fixture
async def topics(gateway: GatewayServer, broker: EmbeddedBroker) -> AsyncIterator[Topology]:
    """The gateway's topics, from what comes after this test starts (one gateway serves
    the whole module: a consumer group join costs seconds)."""
    topology = Topology(broker.bootstrap, gateway.config.topics, from_end=True)
    await topology.start()
    yield topology
    await topology.stop()


@pytest.fixture
async def coap(gateway: GatewayServer) -> AsyncIterator[CoapClient]:
    async with CoapClient("127.0.0.1", gateway.config.bind.port, timeout_s=5) as client:
        yield client
