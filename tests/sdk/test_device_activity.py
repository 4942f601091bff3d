"""Last-seen times and device activity on PostgreSQL and SQLite."""

from __future__ import annotations

from datetime import timedelta

from preservarium.db.models import utcnow
from preservarium.repositories import (
    SQLCommandRepository,
    SQLDeviceActivityRepository,
    SQLDeviceRepository,
)
from preservarium.repositories.commands import CommandStatus
from sqlalchemy.ext.asyncio import AsyncEngine


async def test_the_newest_time_wins_whichever_gateway_writes_last(engine: AsyncEngine) -> None:
    devices = SQLDeviceRepository(engine)
    await devices.register("dev-a", "efento")
    await devices.register("dev-b", "efento")
    revision = await devices.revision()
    activity = SQLDeviceActivityRepository(engine)
    now = utcnow().replace(microsecond=0)
    earlier = now - timedelta(minutes=5)
    # Gateway 1 saw dev-a now; gateway 2 flushes later with an older contact of dev-a.
    assert await activity.record_seen({"dev-a": now, "dev-b": earlier}) == 2
    assert await activity.record_seen({"dev-a": earlier, "dev-b": now}) == 2
    got = await activity.activity(["dev-a", "dev-b"])
    assert got["dev-a"].last_seen_at == now
    assert got["dev-b"].last_seen_at == now
    # Contacts are not registry changes: gateways must not reload on each flush.
    assert await devices.revision() == revision


async def test_a_device_removed_since_its_contact_is_dropped_not_the_batch(
    engine: AsyncEngine,
) -> None:
    devices = SQLDeviceRepository(engine)
    await devices.register("kept", "efento")
    activity = SQLDeviceActivityRepository(engine)
    now = utcnow()
    assert await activity.record_seen({"gone": now, "kept": now}) == 1
    assert (await activity.activity(["kept"]))["kept"].last_seen_at is not None
    await devices.remove("kept")
    await devices.register("kept", "efento")  # registered again: no old time shows
    assert (await activity.activity(["kept"]))["kept"].last_seen_at is None


async def test_activity_counts_pending_commands_and_falls_back_to_sent_ones(
    engine: AsyncEngine,
) -> None:
    devices = SQLDeviceRepository(engine)
    for device_id in ("quiet", "busy"):
        await devices.register(device_id, "efento")
    commands = SQLCommandRepository(engine)
    expires = utcnow() + timedelta(hours=1)
    for n in range(3):
        await commands.add(request_id=f"r{n}", device_id="busy", name="set_period",
                           body='{"params": {}}', expires_at=expires)  # fmt: skip
    claimed = await commands.claim_next("busy", claimer="gw")
    assert claimed is not None
    await commands.finish(claimed.request_id, CommandStatus.SENT, claimer="gw")
    got = await SQLDeviceActivityRepository(engine).activity(["quiet", "busy", "unknown"])
    assert got["quiet"].pending_commands == 0 and got["quiet"].last_contact_at is None
    assert got["quiet"].auth == "none"
    assert got["busy"].pending_commands == 2
    sent = (await commands.get(claimed.request_id)).sent_at
    assert sent is not None and got["busy"].last_contact_at == sent
    assert got["unknown"].pending_commands == 0
    assert await SQLDeviceActivityRepository(engine).activity([]) == {}
