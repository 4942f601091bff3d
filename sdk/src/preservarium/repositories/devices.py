"""The device registry: device id -> device type and attributes.

Every write bumps the registry revision in the same transaction, so that a reader can tell
with one primary-key read whether anything changed since it last loaded the registry.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from preservarium.attributes import checked_attributes
from preservarium.db.models import Device, DeviceCredential, RegistryRevision, utcnow
from preservarium.errors import ConflictError, NotFoundError
from preservarium.repositories.base import SQLRepository


@dataclass(frozen=True, slots=True)
class DeviceFilter:
    """Which devices a search returns: of a type, whose id contains `q`, of an auth kind."""

    device_type: str | None = None
    q: str | None = None
    auth: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceChange:
    """A device to register or change in a batch; attributes None keeps the current ones."""

    device_id: str
    device_type: str
    attributes: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A registered device."""

    id: str
    device_type: str
    created_at: datetime
    attributes: dict[str, Any] = field(default_factory=dict)


def _record(row: Device) -> DeviceRecord:
    return DeviceRecord(row.id, row.device_type, row.created_at, dict(row.attributes or {}))


class SQLDeviceRepository(SQLRepository):
    """Devices in SQL."""

    async def register(
        self, device_id: str, device_type: str, *, attributes: dict[str, Any] | None = None
    ) -> DeviceRecord:
        """Register a new device; ConflictError if the id is taken, InvalidAttributesError
        if the attributes break a bound (preservarium.attributes)."""
        row = Device(
            id=device_id, device_type=device_type, created_at=utcnow(),
            attributes=checked_attributes(dict(attributes or {})),
        )  # fmt: skip
        try:
            async with self.transaction() as session:
                session.add(row)
                await self._bump(session)
        except ConflictError as exc:
            raise ConflictError(f"device {device_id!r} is already registered") from exc
        return _record(row)

    async def get(self, device_id: str) -> DeviceRecord:
        """One device; NotFoundError if it is not registered."""
        async with self.transaction() as session:
            row = await session.get(Device, device_id)
        if row is None:
            raise NotFoundError(f"device {device_id!r} is not registered")
        return _record(row)

    async def list(self) -> list[DeviceRecord]:
        """Every registered device, by id."""
        async with self.transaction() as session:
            rows = (await session.scalars(select(Device).order_by(Device.id))).all()
        return [_record(row) for row in rows]

    async def remove(self, device_id: str) -> None:
        """Forget a device; NotFoundError if it is not registered."""
        async with self.transaction() as session:
            result = await session.execute(delete(Device).where(Device.id == device_id))
            await self._bump(session)
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise NotFoundError(f"device {device_id!r} is not registered")

    async def change_type(self, device_id: str, device_type: str) -> DeviceRecord:
        """Give a registered device another type; NotFoundError if it is not registered."""
        async with self.transaction() as session:
            row = await session.scalar(
                update(Device)
                .where(Device.id == device_id)
                .values(device_type=device_type)
                .returning(Device)
            )
            await self._bump(session)
        if row is None:
            raise NotFoundError(f"device {device_id!r} is not registered")
        return _record(row)

    async def update(
        self,
        device_id: str,
        *,
        device_type: str | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> DeviceRecord:
        """Change the type and/or replace the attributes; NotFoundError if not registered,
        InvalidAttributesError if the attributes break a bound."""
        async with self.transaction() as session:
            row = await session.get(Device, device_id)
            if row is None:
                raise NotFoundError(f"device {device_id!r} is not registered")
            if device_type is not None:
                row.device_type = device_type
            if attributes is not None:
                row.attributes = checked_attributes(dict(attributes))
            await self._bump(session)
            return _record(row)

    async def search(
        self, where: DeviceFilter, *, limit: int, after: str | None = None
    ) -> builtins.list[DeviceRecord]:
        """Up to `limit` devices matching `where`, by id, after the id `after` (a cursor)."""
        query = select(Device).order_by(Device.id).limit(limit)
        if after is not None:
            query = query.where(Device.id > after)
        if where.device_type is not None:
            query = query.where(Device.device_type == where.device_type)
        if where.q:
            pattern = (
                "%"
                + where.q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                + "%"
            )
            query = query.where(func.lower(Device.id).like(pattern, escape="\\"))
        if where.auth is not None:
            query = query.outerjoin(DeviceCredential, DeviceCredential.device_id == Device.id)
            if where.auth == "none":
                query = query.where(
                    or_(DeviceCredential.device_id.is_(None), DeviceCredential.auth == "none")
                )
            else:
                query = query.where(DeviceCredential.auth == where.auth)
        async with self.transaction() as session:
            rows = (await session.scalars(query)).all()
        return [_record(row) for row in rows]

    async def apply(
        self, *, create: Sequence[DeviceChange], change: Sequence[DeviceChange]
    ) -> None:
        """Register `create` and change `change` (type, and attributes when given), all in
        one transaction: all of it or none. ConflictError if an id to create is taken."""
        try:
            async with self.transaction() as session:
                now = utcnow()
                for item in create:
                    attributes = checked_attributes(dict(item.attributes or {}))
                    session.add(
                        Device(id=item.device_id, device_type=item.device_type, created_at=now,
                               attributes=attributes)
                    )  # fmt: skip
                await session.flush()
                for item in change:
                    row = await session.get(Device, item.device_id)
                    if row is None:
                        raise NotFoundError(f"device {item.device_id!r} is not registered")
                    row.device_type = item.device_type
                    if item.attributes is not None:
                        row.attributes = checked_attributes(dict(item.attributes))
                if create or change:
                    await self._bump(session)
        except ConflictError as exc:
            raise ConflictError(f"a device to create was registered meanwhile: {exc}") from exc

    async def update_attributes(
        self,
        device_id: str,
        *,
        set_: dict[str, Any] | None = None,
        unset: tuple[str, ...] = (),
        replace: bool = False,
    ) -> DeviceRecord:
        """Change a device's attributes: start from {} when `replace`, else from the stored
        ones; drop the `unset` keys, then apply `set_`. NotFoundError if the device is not
        registered, InvalidAttributesError if the result breaks a bound."""
        async with self.transaction() as session:
            row = await session.get(Device, device_id, with_for_update=True)
            if row is None:
                raise NotFoundError(f"device {device_id!r} is not registered")
            attributes = {} if replace else dict(row.attributes or {})
            for key in unset:
                attributes.pop(key, None)
            attributes.update(set_ or {})
            row.attributes = checked_attributes(attributes)
            await self._bump(session)
        return _record(row)

    async def revision(self) -> int:
        """The registry revision: it grows with every write (0 before the first)."""
        async with self.transaction() as session:
            found = await session.scalar(
                select(RegistryRevision.revision).where(RegistryRevision.id == 1)
            )
        return int(found or 0)

    async def _bump(self, session: AsyncSession) -> None:
        await bump_registry_revision(self, session)


async def bump_registry_revision(repository: SQLRepository, session: AsyncSession) -> None:
    """Move the registry revision, in the caller's transaction: every write of what a
    gateway's directory holds (devices, their attributes, their credentials) calls it."""
    statement = repository.insert(RegistryRevision).values(id=1, revision=1)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[RegistryRevision.id],
            set_={"revision": RegistryRevision.revision + 1},
        )
    )
