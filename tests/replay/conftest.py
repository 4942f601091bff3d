"""A real sandbox, the suite's broker and a SQLite database, and one scene per test: a
device type with two parser versions, and uplinks written as the gateway writes them."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from preservarium.contract.topics import Topics
from preservarium.db.engine import make_engine
from preservarium.replay.lease import LEASE_S
from preservarium.replay.service import Replays
from preservarium.replay.window import Window
from preservarium.repositories import ReplayRecord, SQLParserRepository, SQLReplayRepository
from preservarium.sandbox_client import SandboxClient
from preservarium_gateway.kafka import ensure_topics
from preservarium_sandbox.server import SandboxServer
from preservarium_tools.embedded.broker import EmbeddedBroker
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.sandbox.conftest import sandbox_config
from tests.support.kafka import TopicReader, prefix
from tests.support.sqlite import SQLiteTemplate

# Version 1 is what ran at the time; version 2 changes 2, fails on 3 and fixes 4.
V1 = """
def parse(payload, metadata):
    t = payload[0]
    if t == 4:
        raise ValueError("four is not understood")
    return {"t": t, "path": metadata["path"]}
"""
V2 = """
def identify(payload, metadata):
    return "route-dev" if payload[0] < 100 else "someone-else"

def parse(payload, metadata):
    t = payload[0]
    if t == 3:
        raise ValueError("three is refused now")
    if t == 2:
        return {"t": 20, "path": metadata["path"]}
    return {"t": t, "path": metadata["path"]}
"""


@pytest.fixture(scope="module")
async def replay_db(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: SQLiteTemplate
) -> str:
    return await sqlite_template.copy(tmp_path_factory.mktemp("replay") / "replay.db")


@pytest.fixture(scope="module")
async def sandbox(replay_db: str) -> AsyncIterator[SandboxServer]:
    async with SandboxServer(sandbox_config(replay_db, workers=2)) as server:
        yield server


@pytest.fixture(scope="module")
async def db_engine(replay_db: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(replay_db)
    yield engine
    await engine.dispose()


@dataclass
class Scene:
    """One test's device type, topics and uplinks."""

    bootstrap: str
    engine: AsyncEngine
    sandbox_addr: str
    database_url: str
    device_type: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:10]}")
    prefix: str = field(default_factory=prefix)
    raw_ids: list[str] = field(default_factory=list)

    @property
    def topics(self) -> Topics:
        return Topics.with_prefix(self.prefix)

    def topic(self, suffix: str) -> str:
        return self.prefix + suffix

    @property
    def env(self) -> dict[str, str]:
        """The CLI's environment for this scene."""
        return {
            "PRESERVARIUM_KAFKA_BOOTSTRAP": self.bootstrap,
            "PRESERVARIUM_TOPIC_PREFIX": self.prefix,
            "PRESERVARIUM_DATABASE_URL": self.database_url,
            "PRESERVARIUM_SANDBOX_ADDR": self.sandbox_addr,
        }  # fmt: skip

    def reader(self, suffix: str) -> TopicReader:
        return TopicReader(self.bootstrap, self.topic(suffix))

    @staticmethod
    def window(minutes: int = 10) -> Window:
        now = datetime.now(UTC)
        return Window(now - timedelta(minutes=minutes), now)

    async def uplinks(
        self, payloads: list[bytes], *, original: bool = True, age_s: float = 60,
        device_id: str | None = "dev-1", device_type: str | None = None,
    ) -> list[str]:  # fmt: skip
        """Raw records (and, with `original`, what version 1 made of them) as the
        gateway writes them, `age_s` seconds ago; their ids."""
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        await producer.start()
        ids = []
        try:
            stamp = int((time.time() - age_s) * 1000)
            for payload in payloads:
                uplink_id = uuid.uuid4().hex
                raw = _raw(uplink_id, payload, device_id, device_type or self.device_type, stamp)
                key = None if device_id is None else device_id.encode()
                await producer.send_and_wait(self.topic("uplink.raw"), _json(raw), key=key,
                                             timestamp_ms=stamp)  # fmt: skip
                if original:
                    topic, record = _original(raw, payload, device_id or "route-dev")
                    await producer.send_and_wait(self.topic(topic), _json(record),
                                                 timestamp_ms=stamp + 1)  # fmt: skip
                ids.append(uplink_id)
        finally:
            await producer.stop()
        self.raw_ids += ids
        return ids

    def replays(
        self, client: SandboxClient, replay_repository: SQLReplayRepository | None = None,
        *, lease_s: float = LEASE_S,
    ) -> Replays:  # fmt: skip
        return Replays(
            parsers=SQLParserRepository(self.engine),
            replays=replay_repository or SQLReplayRepository(self.engine),
            sandbox=client, bootstrap=self.bootstrap, topics=self.topics, lease_s=lease_s,
        )  # fmt: skip


def _json(record: dict[str, Any]) -> bytes:
    import json

    return json.dumps(record).encode()


def _raw(
    uplink_id: str, payload: bytes, device_id: str | None, device_type: str, stamp: int
) -> dict[str, Any]:
    at = datetime.fromtimestamp(stamp / 1000, UTC).isoformat().replace("+00:00", "Z")
    return {"v": 1, "id": uplink_id, "received_at": at, "device_id": device_id,
            "device_type": device_type, "method": "POST", "path": "" if device_id else "m",
            "confirmable": True, "remote": "127.0.0.1:40000",
            "payload_b64": base64.b64encode(payload).decode()}  # fmt: skip


def _original(raw: dict[str, Any], payload: bytes, device_id: str) -> tuple[str, dict[str, Any]]:
    """What version 1 made of the uplink at the time."""
    head = {key: raw[key] for key in ("v", "id", "received_at", "device_type")}
    head["device_id"] = device_id
    if payload[0] == 4:
        error = {
            "kind": "runtime_error",
            "message": "line 5: ValueError: four is not understood",
            "line": 5,
        }
        return "uplink.failed", {**head, "payload_b64": raw["payload_b64"], "error": error}
    parser = {"name": raw["device_type"], "version": 1}
    data = {"t": payload[0], "path": raw["path"]}
    return "uplink.parsed", {**head, "parser": parser, "data": data, "warnings": []}


@pytest.fixture
async def scene(
    broker: EmbeddedBroker, sandbox: SandboxServer, db_engine: AsyncEngine, replay_db: str
) -> Scene:
    created = Scene(broker.bootstrap, db_engine, sandbox.config.listen, replay_db)
    names = tuple(created.topic(s) for s in ("uplink.raw", "uplink.parsed", "uplink.failed"))
    await ensure_topics(broker.bootstrap, names, partitions=3)
    parsers = SQLParserRepository(db_engine)
    await parsers.upload(created.device_type, V1)
    await parsers.upload(created.device_type, V2, activate=False)
    return created


@pytest.fixture
async def client(sandbox: SandboxServer) -> AsyncIterator[SandboxClient]:
    async with SandboxClient(sandbox.config.listen, timeout_s=10, streams=2) as created:
        yield created


def source_file(tmp_path: Path, text: str = V2) -> Path:
    path = tmp_path / "parser.py"
    path.write_text(text)
    return path


async def until_lease_expires(record: ReplayRecord) -> None:
    """Sleep until the lease a (crashed) runner left on `record` has expired."""
    assert record.lease_until is not None
    left = (record.lease_until - datetime.now(UTC)).total_seconds()
    await asyncio.sleep(max(0.0, left) + 0.05)


async def stamped_of(scene: Scene, replay_id: str, count: int) -> Counter[str]:
    """The original ids of the replay's results, once `count` of them are on the topics,
    and a moment more (to see a duplicate, if one came)."""
    readers = [
        TopicReader(scene.bootstrap, scene.topic(t)) for t in ("uplink.parsed", "uplink.failed")
    ]
    for reader in readers:
        await reader.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while True:
            found = [v for r in readers for v in r.values()
                     if (v.get("replay") or {}).get("id") == replay_id]  # fmt: skip
            if len(found) >= count or loop.time() > deadline:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        found = [v for r in readers for v in r.values()
                 if (v.get("replay") or {}).get("id") == replay_id]  # fmt: skip
    finally:
        for reader in readers:
            await reader.stop()
    return Counter(v["replay"]["of"] for v in found)
