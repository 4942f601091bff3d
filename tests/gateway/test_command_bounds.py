"""What the gateway keeps for commands stays bounded: the in-memory count of a command's
sandbox-unavailable attempts (a command settled elsewhere never returns to clear its
count, so the oldest counts give way), and the commands queued for one device."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from preservarium.contract.command_requests import CommandRequest, read_command_request
from preservarium.contract.topics import Topics
from preservarium.db.engine import make_engine
from preservarium.db.migrate import upgrade
from preservarium.db.models import utcnow
from preservarium.repositories import SQLCommandRepository
from preservarium_gateway.commands import CommandDesk
from preservarium_gateway.config import GatewayLimits
from preservarium_gateway.kafka import KafkaPublisher
from sqlalchemy.ext.asyncio import AsyncEngine


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'attempts.db'}"
    await upgrade(url)
    created = make_engine(url)
    yield created
    await created.dispose()


async def test_counted_attempts_are_bounded_and_the_oldest_give_way(engine: AsyncEngine) -> None:
    repository = SQLCommandRepository(engine)
    desk = CommandDesk(
        repository=repository,
        # Never started: status records are dropped (counted), all this test needs.
        publisher=KafkaPublisher("127.0.0.1:9", timeout_s=0.1),
        topics=Topics.with_prefix("attempts."),
        limits=GatewayLimits(),
        claimer="gw-a",
        max_attempts=3,
        max_counted=2,
    )
    for n in range(3):
        await repository.add(
            request_id=f"r{n}", device_id=f"d{n}", name="c", body='{"params":{}}',
            expires_at=utcnow() + timedelta(seconds=600),
        )  # fmt: skip
        desk.index.add(f"d{n}")
        command = await desk.claim(f"d{n}")
        assert command is not None
        await desk.retry_later(command, "down")
    assert desk.counted == 2
    # r0's count gave way: its next unavailable contact counts from one again, while r2,
    # still counted, fails on its third.
    for n in (0, 2):
        for _ in range(2):
            desk.index.add(f"d{n}")
            command = await desk.claim(f"d{n}")
            assert command is not None
            await desk.retry_later(command, "down")
    assert (await repository.get("r0")).status == "queued"
    assert (await repository.get("r2")).status == "failed"


def request(request_id: str, device_id: str = "busy") -> CommandRequest:
    value = json.dumps({"request_id": request_id, "device_id": device_id, "command": "c"})
    read = read_command_request(value.encode(), now=utcnow())
    assert isinstance(read, CommandRequest)
    return read


async def test_a_device_with_a_full_queue_gets_no_more_commands(engine: AsyncEngine) -> None:
    repository = SQLCommandRepository(engine)
    statuses: list[str] = []
    desk = CommandDesk(
        repository=repository,
        publisher=KafkaPublisher("127.0.0.1:9", timeout_s=0.1),
        topics=Topics.with_prefix("bounds."),
        limits=GatewayLimits(command_queue_limit=2),
        claimer="gw-a",
        on_status=statuses.append,
    )
    for n in range(3):
        await desk.store(request(f"q{n}"))
    assert statuses == ["queued", "queued", "rejected"]
    assert await repository.queued_count("busy") == 2
    # A redelivery of a queued request is the same request, not one more.
    await desk.store(request("q0"))
    assert statuses == ["queued", "queued", "rejected"]
    # Another device's queue is its own; a claimed command still counts until settled.
    await desk.store(request("other", device_id="calm"))
    desk.index.add("busy")
    claimed = await desk.claim("busy")
    assert claimed is not None
    await desk.store(request("q3"))
    assert statuses[-2:] == ["queued", "rejected"]
    await desk.sent(claimed, b"")
    await desk.store(request("q4"))
    assert statuses[-2:] == ["sent", "queued"]
