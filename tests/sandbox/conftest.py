"""A real sandbox service (gRPC server, worker processes, SQLite repository) for tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from preservarium.contract.contact import Contact
from preservarium.db.engine import make_engine
from preservarium.repositories import SQLParserRepository
from preservarium.sandbox_client import SandboxClient
from preservarium_sandbox.limits import Limits
from preservarium_sandbox.quarantine import QuarantinePolicy
from preservarium_sandbox.server import SandboxConfig, SandboxServer
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.clock import SteppedClock
from tests.support.contacts import unix
from tests.support.net import free_port
from tests.support.sqlite import SQLiteTemplate

QUARANTINE = QuarantinePolicy(threshold=3, cooldown_s=2.0)


def sandbox_config(database_url: str, **overrides: object) -> SandboxConfig:
    """A sandbox on a free port with test-friendly limits."""
    values: dict[str, object] = {
        "listen": f"127.0.0.1:{free_port()}",
        "database_url": database_url,
        "workers": 2,
        "limits": Limits(timeout_ms=100, memory_mb=256),
        "metrics_port": 0,
        "spares": 1,
        "refresh_interval_s": 0.2,
        "quarantine": QUARANTINE,
    }
    values.update(overrides)
    return SandboxConfig(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
async def sandbox_db(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: SQLiteTemplate
) -> str:
    return await sqlite_template.copy(tmp_path_factory.mktemp("sandbox") / "sandbox.db")


@pytest.fixture(scope="module")
def sandbox_clock() -> SteppedClock:
    """The module sandbox's clock: real time, stepped by tests that wait out a bench."""
    return SteppedClock()


@pytest.fixture(scope="module")
async def sandbox(sandbox_db: str, sandbox_clock: SteppedClock) -> AsyncIterator[SandboxServer]:
    async with SandboxServer(sandbox_config(sandbox_db), clock=sandbox_clock) as server:
        yield server


@pytest.fixture(scope="module")
async def client(sandbox: SandboxServer) -> AsyncIterator[SandboxClient]:
    async with SandboxClient(sandbox.config.listen, timeout_s=10) as created:
        yield created


@pytest.fixture(scope="module")
async def repo_engine(sandbox_db: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(sandbox_db)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="module")
def parsers(repo_engine: AsyncEngine) -> SQLParserRepository:
    return SQLParserRepository(repo_engine)


def contact(device_type: str, payload: bytes = b"\x00", **kw: object) -> Contact:
    """A contact of a registered device."""
    values: dict[str, object] = {
        "device_id": "dev-1",
        "path": "",
        "received_at": unix(1_700_000_000),
    }
    values.update(kw)
    return Contact(payload=payload, device_type=device_type, **values)  # type: ignore[arg-type]


async def wait_for_version(
    client: SandboxClient, device_type: str, version: int, timeout_s: float = 5.0
) -> float:
    """Poll Parse until `version` answers; return how long it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        response = await client.parse(contact(device_type))
        if response.parser.version == version:
            return loop.time() - started
        if loop.time() - started > timeout_s:
            kind = "-" if response.error is None else response.error.kind
            raise AssertionError(f"version {version} of {device_type} not served ({kind})")
        await asyncio.sleep(0.05)


@pytest.fixture
async def roomy_sandbox(sandbox_db: str) -> AsyncIterator[SandboxServer]:
    """A sandbox whose per-call limit is seconds, for tests of what travels and of who
    waits for whom, not of time: no call of it ends for lack of CPU on a busy machine."""
    async with SandboxServer(
        sandbox_config(sandbox_db, limits=Limits(timeout_ms=5000, memory_mb=256))
    ) as server:
        yield server
