"""Device activity: when each device was last seen, and what a device list shows of it.

Gateways hold the times of the contacts they delivered in memory and write them here in
batches (`record_seen`): one INSERT ... ON CONFLICT per batch, the newest time winning,
so two gateways that saw the same device keep the later contact. The table is apart from
`devices` so these writes never move the registry revision.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from preservarium.db.models import Command, Device, DeviceCredential, DeviceLastSeen
from preservarium.errors import ConflictError
from preservarium.repositories.base import SQLRepository

# Rows per INSERT: two parameters a row stays far below both backends' parameter limits.
BATCH_ROWS = 1000
_PENDING = ("queued", "claimed")


@dataclass(frozen=True, slots=True)
class DeviceActivity:
    """What is known of a device's contacts and commands, for a device list or view."""

    auth: str = "none"
    last_seen_at: datetime | None = None
    last_authenticated_at: datetime | None = None
    last_command_sent_at: datetime | None = None
    pending_commands: int = 0

    @property
    def last_contact_at(self) -> datetime | None:
        """The latest of the times a gateway recorded a contact of the device."""
        times = [t for t in (self.last_seen_at, self.last_authenticated_at,
                             self.last_command_sent_at) if t is not None]  # fmt: skip
        return max(times) if times else None


class SQLDeviceActivityRepository(SQLRepository):
    """Last-seen times (written in batches by gateways) and per-device activity reads."""

    async def record_seen(self, seen: Mapping[str, datetime]) -> int:
        """Store each device's last-seen time unless a later one is stored; return how
        many were written. Ids of devices no longer registered are dropped."""
        items = sorted(seen.items())
        try:
            await self._upsert(items)
        except ConflictError:  # a device was removed since its contact: keep the others
            registered = await self._registered([device_id for device_id, _ in items])
            items = [(device_id, at) for device_id, at in items if device_id in registered]
            await self._upsert(items)
        return len(items)

    async def _upsert(self, items: list[tuple[str, datetime]]) -> None:
        if not items:
            return
        async with self.transaction() as session:
            for start in range(0, len(items), BATCH_ROWS):
                rows = [{"device_id": device_id, "last_seen_at": at}
                        for device_id, at in items[start : start + BATCH_ROWS]]  # fmt: skip
                statement = self.insert(DeviceLastSeen).values(rows)
                newest = func.greatest if self.dialect == "postgresql" else func.max
                await session.execute(
                    statement.on_conflict_do_update(
                        index_elements=[DeviceLastSeen.device_id],
                        set_={"last_seen_at": newest(DeviceLastSeen.last_seen_at,
                                                     statement.excluded.last_seen_at)},
                    )
                )  # fmt: skip

    async def _registered(self, device_ids: list[str]) -> set[str]:
        async with self.transaction() as session:
            rows = await session.scalars(select(Device.id).where(Device.id.in_(device_ids)))
            return set(rows.all())

    async def activity(self, device_ids: Collection[str]) -> dict[str, DeviceActivity]:
        """The activity of each of `device_ids`, with the kind of its credentials (a page
        of a list: four indexed reads)."""
        ids = list(device_ids)
        if not ids:
            return {}
        async with self.transaction() as session:
            seen = await _by_device(
                session, select(DeviceLastSeen.device_id, DeviceLastSeen.last_seen_at), ids
            )
            auth = await _by_device(
                session, select(DeviceCredential.device_id, DeviceCredential.auth), ids
            )
            authenticated = await _by_device(
                session,
                select(DeviceCredential.device_id, DeviceCredential.last_authenticated_at),
                ids,
            )
            sent = await _by_device(
                session,
                select(Command.device_id, func.max(Command.sent_at))
                .where(Command.status == "sent")
                .group_by(Command.device_id),
                ids,
            )
            pending = await _by_device(
                session,
                select(Command.device_id, func.count())
                .where(Command.status.in_(_PENDING))
                .group_by(Command.device_id),
                ids,
            )
        return {
            device_id: DeviceActivity(
                auth=auth.get(device_id) or "none",
                last_seen_at=seen.get(device_id),
                last_authenticated_at=authenticated.get(device_id),
                last_command_sent_at=sent.get(device_id),
                pending_commands=int(pending.get(device_id) or 0),
            )
            for device_id in ids
        }  # fmt: skip


async def _by_device(
    session: AsyncSession, query: Select[str, Any], ids: list[str]
) -> dict[str, Any]:
    """Rows (device id, value) of `query` for the devices `ids`, as a dict."""
    device_id = query.selected_columns[0]
    rows = await session.execute(query.where(device_id.in_(ids)))
    return {row[0]: row[1] for row in rows}
