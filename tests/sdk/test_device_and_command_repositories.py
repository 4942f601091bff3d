"""Device registry and command rows on PostgreSQL and SQLite."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any

import pytest
from preservarium.db.models import utcnow
from preservarium.errors import ConflictError, NotFoundError
from preservarium.repositories import CommandRecord, SQLCommandRepository, SQLDeviceRepository
from preservarium.repositories.commands import CommandStatus
from sqlalchemy.ext.asyncio import AsyncEngine


async def test_device_registry_crud(engine: AsyncEngine) -> None:
    devices = SQLDeviceRepository(engine)
    await devices.register("dev-1", "dragino")
    await devices.register("dev-0", "efento")
    assert [(d.id, d.device_type) for d in await devices.list()] == [
        ("dev-0", "efento"),
        ("dev-1", "dragino"),
    ]
    assert (await devices.get("dev-1")).device_type == "dragino"
    with pytest.raises(ConflictError, match="dev-1"):
        await devices.register("dev-1", "efento")
    await devices.remove("dev-1")
    with pytest.raises(NotFoundError, match="dev-1"):
        await devices.get("dev-1")
    with pytest.raises(NotFoundError):
        await devices.remove("dev-1")


def _command(
    commands: SQLCommandRepository, request_id: str, device: str = "d1", ttl: int = 60
) -> Coroutine[Any, Any, CommandRecord]:
    return commands.add(
        request_id=request_id,
        device_id=device,
        name="set_period",
        body='{"params": {}}',
        expires_at=utcnow() + timedelta(seconds=ttl),
    )


async def test_command_rows_are_unique_by_request_id(engine: AsyncEngine) -> None:
    commands = SQLCommandRepository(engine)
    await _command(commands, "r1")
    with pytest.raises(ConflictError, match="r1"):
        await _command(commands, "r1", device="d2")
    assert (await commands.get("r1")).device_id == "d1"


async def test_claims_are_oldest_first_and_exclusive(engine: AsyncEngine) -> None:
    commands = SQLCommandRepository(engine)
    for n in range(3):
        await _command(commands, f"r{n}")
    assert await commands.pending_device_ids() == {"d1"}
    claims = await asyncio.gather(*(commands.claim_next("d1", claimer=f"g{n}") for n in range(5)))
    claimed = sorted(c.request_id for c in claims if c is not None)
    assert claimed == ["r0", "r1", "r2"]
    sent = await commands.finish("r0", CommandStatus.SENT)
    assert sent.status is CommandStatus.SENT and sent.sent_at is not None
    assert await commands.claim_next("d1", claimer="g0") is None


async def test_expired_commands_are_never_claimed(engine: AsyncEngine) -> None:
    commands = SQLCommandRepository(engine)
    await _command(commands, "old", ttl=-1)
    await _command(commands, "new")
    expired = await commands.expire_due()
    assert [c.request_id for c in expired] == ["old"]
    claimed = await commands.claim_next("d1", claimer="g")
    assert claimed is not None and claimed.request_id == "new"


async def test_queued_count_counts_waiting_and_claimed_commands_of_one_device(
    engine: AsyncEngine,
) -> None:
    commands = SQLCommandRepository(engine)
    for n in range(3):
        await _command(commands, f"c{n}")
    await _command(commands, "elsewhere", device="d2")
    claimed = await commands.claim_next("d1", claimer="gw")
    assert claimed is not None
    assert await commands.queued_count("d1") == 3
    await commands.finish(claimed.request_id, CommandStatus.SENT, claimer="gw")
    assert await commands.queued_count("d1") == 2
    assert await commands.queued_count("nobody") == 0
