"""The gateway's background loops run supervised: an injected failure is counted, the
health probe says unhealthy while the loop is down and healthy once it runs again, and
the loop does its work after the restart."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from aiokafka.errors import InvalidSessionTimeoutError, KafkaConnectionError
from preservarium.repositories import SQLCommandRepository
from preservarium.settings import HostPort
from preservarium.supervisor import Backoff
from preservarium_gateway.consumer import is_transient
from preservarium_gateway.probe import check_gateway
from preservarium_gateway.server import GatewayServer
from preservarium_sandbox.server import SandboxServer
from preservarium_tools.embedded.broker import EmbeddedBroker

from tests.gateway.conftest import Topology, gateway_config
from tests.support.kafka import prefix, produce
from tests.support.supervision import HeldPause

# Long enough for the probe to see the loop down on a loaded machine.
BACKOFF = Backoff(initial_s=0.2, max_s=0.2)


@pytest.fixture(scope="module")
async def supervised(
    gw_db: str, gw_sandbox: SandboxServer, broker: EmbeddedBroker
) -> AsyncIterator[GatewayServer]:
    config = gateway_config(
        database_url=gw_db, bootstrap=broker.bootstrap,
        sandbox_addr=gw_sandbox.config.listen, topic_prefix=prefix(),
    )  # fmt: skip
    server = GatewayServer(config)
    server.supervisor.backoff = BACKOFF
    async with server:
        yield server


@pytest.fixture
async def status(supervised: GatewayServer, broker: EmbeddedBroker) -> AsyncIterator[Topology]:
    topology = Topology(broker.bootstrap, supervised.config.topics, from_end=True)
    await topology.start()
    yield topology
    await topology.stop()


def restarts(server: GatewayServer, task: str) -> float:
    value = server.metrics.registry.get_sample_value(
        "preservarium_task_restarts_total", {"task": task}
    )
    return value or 0.0


async def probe(server: GatewayServer) -> bool:
    address = HostPort("127.0.0.1", server.config.bind.port)
    ok, _ = await asyncio.to_thread(check_gateway, address, timeout_s=2)
    return ok


async def until_probe(server: GatewayServer, healthy: bool) -> None:
    for _ in range(300):
        if await probe(server) == healthy:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the probe never said {'healthy' if healthy else 'unhealthy'}")


@pytest.fixture
def held(supervised: GatewayServer) -> Iterator[HeldPause]:
    """Failed loops of the gateway stay down until the test releases them."""
    pause = HeldPause()
    supervised.supervisor.pause = pause
    yield pause
    pause.release()
    supervised.supervisor.pause = asyncio.sleep


async def unhealthy_then_healthy(server: GatewayServer, held: HeldPause) -> None:
    """The probe says unhealthy while a failed loop is held down, healthy once it runs."""
    await until_probe(server, healthy=False)
    assert server.metrics.registry.get_sample_value("preservarium_tasks_healthy") == 0
    held.release()
    await until_probe(server, healthy=True)


def fail_once(original: Callable[..., Any]) -> Callable[..., Any]:
    calls: list[int] = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected failure")
        return original(*args, **kwargs)

    return wrapper


async def test_the_command_consumer_is_restarted_after_a_failure(
    supervised: GatewayServer, status: Topology, broker: EmbeddedBroker,
    monkeypatch: pytest.MonkeyPatch, held: HeldPause,
) -> None:  # fmt: skip
    assert await probe(supervised)
    monkeypatch.setattr(supervised.desk, "reject", fail_once(supervised.desk.reject))
    junk = json.dumps({"request_id": f"j-{uuid.uuid4().hex}", "device_id": "bad id!"})
    await produce(broker.bootstrap, supervised.config.topics.command_request, junk.encode())
    await unhealthy_then_healthy(supervised, held)
    assert restarts(supervised, "command-consumer") == 1
    # The record that met the failure was not committed: read again and settled once.
    rejected = await status.status.wait_for(lambda r: r["status"] == "rejected", timeout_s=20)
    assert [r["request_id"] for r in rejected] == [json.loads(junk)["request_id"]]


async def test_the_expiry_sweep_is_restarted_after_a_failure(
    supervised: GatewayServer, status: Topology, broker: EmbeddedBroker,
    monkeypatch: pytest.MonkeyPatch, held: HeldPause,
) -> None:  # fmt: skip
    original = SQLCommandRepository.expire_due
    calls: list[int] = []

    async def expire_due(self: SQLCommandRepository) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected failure")
        return await original(self)

    monkeypatch.setattr(SQLCommandRepository, "expire_due", expire_due)
    await unhealthy_then_healthy(supervised, held)
    assert restarts(supervised, "command-housekeeping") == 1
    request_id = uuid.uuid4().hex
    record = {"request_id": request_id, "device_id": "sup-1", "command": "c", "ttl_s": 0.5}
    await produce(broker.bootstrap, supervised.config.topics.command_request,
                  json.dumps(record).encode())  # fmt: skip
    await status.status.wait_for(
        lambda r: r["request_id"] == request_id and r["status"] == "expired", timeout_s=20
    )


def test_a_session_the_broker_refuses_goes_to_the_supervisor() -> None:
    """The consumer retries what may pass by itself; a session timeout the broker refuses
    (a configuration error) is raised to the supervisor, which shows the loop down."""
    assert is_transient(KafkaConnectionError("broker away"))
    assert not is_transient(InvalidSessionTimeoutError())
