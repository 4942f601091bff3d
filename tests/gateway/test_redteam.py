"""Adversarial findings against the gateway and the command path, one test (or group) each.

Each test failed on the code before its fix: a hostile network peer, Kafka producer or
parser author could break what it checks.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from preservarium.db.models import utcnow
from preservarium.errors import ConflictError
from preservarium.repositories import CommandRecord, SQLCommandRepository
from preservarium_gateway.commands import CommandDesk
from preservarium_gateway.config import GatewayLimits, Topics
from preservarium_gateway.kafka import KafkaPublisher
from sqlalchemy.ext.asyncio import AsyncEngine


def _desk(engine: AsyncEngine, claimer: str) -> CommandDesk:
    # Never started: the status records it emits are dropped (counted), which is all
    # these tests need from it.
    publisher = KafkaPublisher("127.0.0.1:9", timeout_s=0.1)
    return CommandDesk(
        repository=SQLCommandRepository(engine), publisher=publisher,
        topics=Topics.with_prefix("redteam."), limits=GatewayLimits(), claimer=claimer,
    )  # fmt: skip


async def _queued(engine: AsyncEngine, request_id: str, device_id: str) -> None:
    await SQLCommandRepository(engine).add(
        request_id=request_id, device_id=device_id, name="set_period",
        body='{"params":{}}', expires_at=utcnow() + timedelta(seconds=600),
    )  # fmt: skip


async def _stale_takeover(engine: AsyncEngine) -> tuple[CommandDesk, CommandRecord, CommandDesk]:
    """Gateway A claims r1; its claim goes stale; gateway B sweeps and claims r1."""
    await _queued(engine, "r1", "dev-x")
    desk_a, desk_b = _desk(engine, "gw-a"), _desk(engine, "gw-b")
    await desk_a.refresh()
    await desk_b.refresh()
    mine = await desk_a.claim("dev-x")
    assert mine is not None
    # B's sweep sees A's claim as stale (A stalled, or B's clock runs ahead).
    await SQLCommandRepository(engine).requeue_stale_claims(utcnow() + timedelta(seconds=1))
    await desk_b.refresh()
    theirs = await desk_b.claim("dev-x")
    assert theirs is not None and theirs.request_id == "r1"
    return desk_a, mine, desk_b


class TestExactlyOnceAcrossGateways:
    """A gateway settles only a claim it still holds: never another gateway's."""

    async def test_a_late_release_does_not_requeue_another_gateways_claim(
        self, engine: AsyncEngine
    ) -> None:
        desk_a, mine, _ = await _stale_takeover(engine)
        await desk_a.release(mine)  # A's contact failed late (its raw record timed out)
        third = _desk(engine, "gw-c")
        await third.refresh()
        assert await third.claim("dev-x") is None  # B is sending it: nobody else may

    async def test_a_late_sent_is_refused_so_the_bytes_never_leave(
        self, engine: AsyncEngine
    ) -> None:
        desk_a, mine, desk_b = await _stale_takeover(engine)
        with pytest.raises(ConflictError):
            await desk_a.sent(mine, b"P")
        with pytest.raises(ConflictError):
            await desk_a.failed(mine, "late")
        await desk_b.sent(mine, b"P")  # the holder settles it
        assert (await SQLCommandRepository(engine).get("r1")).status == "sent"
