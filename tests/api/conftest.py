"""The API on real services: a migrated database (SQLite and PostgreSQL), the suite's
broker, a real sandbox, real tokens. `client` talks to the app in process; `live` to the
real uvicorn listener on a free port."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from preservarium.api_access import Scope
from preservarium.contract.topics import Topics
from preservarium.identity import SecretBox
from preservarium.repositories import SQLTokenRepository
from preservarium.sandbox_client import SandboxClient
from preservarium.settings import HostPort
from preservarium.supervisor import Supervisor
from preservarium_gateway.api import ApiContext, create_app
from preservarium_gateway.api.server import ApiServer
from preservarium_gateway.kafka import KafkaPublisher
from preservarium_gateway.metrics import GatewayMetrics
from preservarium_sandbox.server import SandboxServer
from preservarium_tools.embedded.broker import EmbeddedBroker
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.sandbox.conftest import sandbox_config
from tests.support.kafka import prefix
from tests.support.sqlite import SQLiteTemplate

SECRET_KEY = "api-tests-secret-key-0123456789abcdef"


@dataclass
class Api:
    """The app under test and what it runs on."""

    context: ApiContext
    app: object
    tokens: dict[str, str]  # scope name -> bearer token
    database_url: str

    def auth(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[scope]}"}


@pytest.fixture(scope="session")
async def api_sandbox(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: SQLiteTemplate
) -> AsyncIterator[SandboxServer]:
    """One sandbox for every API test: they only test unsaved sources on it or upload
    parsers under device types of their own, so none depends on a fresh one (starting one
    costs its worker processes, once per module before)."""
    url = await sqlite_template.copy(tmp_path_factory.mktemp("api-sandbox") / "sandbox.db")
    async with SandboxServer(sandbox_config(url)) as server:
        yield server


@pytest.fixture
async def api(
    engine: AsyncEngine,
    database_url: str,
    broker: EmbeddedBroker,
    api_sandbox: SandboxServer,
) -> AsyncIterator[Api]:
    topics = Topics.with_prefix(prefix())
    publisher = KafkaPublisher(broker.bootstrap, timeout_s=5.0, topics=topics.all(), partitions=3)
    sandbox = SandboxClient(api_sandbox.config.listen, timeout_s=10.0)
    await publisher.start()
    await sandbox.start()
    context = ApiContext(
        engine=engine, secrets=SecretBox((SECRET_KEY,)), publish=publisher.publish,
        topics=topics, kafka_bootstrap=broker.bootstrap, sandbox=sandbox,
        metrics=GatewayMetrics(),
    )  # fmt: skip
    repository = SQLTokenRepository(engine)
    tokens = {}
    for scope in Scope:
        _, tokens[scope.value] = await repository.create(f"{scope.value}-{uuid.uuid4().hex[:6]}",
                                                         scope)  # fmt: skip
    app = create_app(context, console=False)
    try:
        yield Api(context, app, tokens, database_url)
    finally:
        await app.state.replay_runs.stop()  # replays started by a test: stored interrupted
        await sandbox.stop()
        await publisher.stop()


@pytest.fixture
async def client(api: Api) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=api.app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        yield http


@pytest.fixture
async def live(api: Api) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the real uvicorn listener on a free port."""
    app = api.app
    server = ApiServer(app=app, listen=HostPort("127.0.0.1", 0), supervisor=Supervisor())  # type: ignore[arg-type]
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}",
                                     timeout=15.0) as http:  # fmt: skip
            yield http
    finally:
        await server.stop()
