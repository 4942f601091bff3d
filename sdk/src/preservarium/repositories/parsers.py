"""SQLParserRepository: device type -> immutable numbered parser versions, one active."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from preservarium.db.models import ParserType, ParserVersion, utcnow
from preservarium.errors import NotFoundError
from preservarium.repositories.base import SQLRepository
from preservarium.repositories.parser_changes import PARSER_CHANNEL


@dataclass(frozen=True, slots=True)
class ParserRecord:
    """One stored parser version, with its source."""

    device_type: str
    version: int
    source: str
    sha256: str
    size: int
    created_at: datetime
    uploaded_by: str
    examples: str | None
    active: bool


@dataclass(frozen=True, slots=True)
class ParserSummary:
    """A device type's parser: versions stored and which one is active."""

    device_type: str
    latest_version: int
    active_version: int | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ActiveParser:
    """What the sandbox needs to know to tell whether its cached version is current."""

    device_type: str
    version: int
    sha256: str


def source_sha256(source: str) -> str:
    """The content hash that keys compiled parsers."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def _record(row: ParserVersion, active_version: int | None) -> ParserRecord:
    return ParserRecord(
        device_type=row.device_type,
        version=row.version,
        source=row.source,
        sha256=row.sha256,
        size=row.size,
        created_at=row.created_at,
        uploaded_by=row.uploaded_by,
        examples=row.examples,
        active=row.version == active_version,
    )


class SQLParserRepository(SQLRepository):
    """Parser versions in SQL. Versions are numbered per type from 1 and never change."""

    async def upload(
        self,
        device_type: str,
        source: str,
        *,
        uploaded_by: str = "",
        examples: str | None = None,
        activate: bool = True,
    ) -> ParserRecord:
        """Store `source` as the next version of `device_type`; activate it unless told not to."""
        now = utcnow()
        async with self.transaction() as session:
            await session.execute(
                self.insert(ParserType)
                .values(device_type=device_type, latest_version=0, updated_at=now)
                .on_conflict_do_nothing(index_elements=["device_type"])
            )
            # The row lock taken by this UPDATE serialises concurrent uploads of one type.
            bumped = await session.execute(
                update(ParserType)
                .where(ParserType.device_type == device_type)
                .values(latest_version=ParserType.latest_version + 1, updated_at=now)
                .returning(ParserType.latest_version, ParserType.active_version)
            )
            version, active_version = bumped.one()
            row = ParserVersion(
                device_type=device_type,
                version=version,
                source=source,
                sha256=source_sha256(source),
                size=len(source.encode("utf-8")),
                created_at=now,
                uploaded_by=uploaded_by,
                examples=examples,
            )
            session.add(row)
            if activate:
                await session.execute(
                    update(ParserType)
                    .where(ParserType.device_type == device_type)
                    .values(active_version=version)
                )
                active_version = version
                await self._announce(session, device_type)
            await session.flush()
            return _record(row, active_version)

    async def get_parser_for_sensor(self, device_type: str) -> ParserRecord:
        """The active version of `device_type`, with its source."""
        async with self.transaction() as session:
            result = await session.execute(
                select(ParserVersion, ParserType.active_version)
                .join(ParserType, ParserType.device_type == ParserVersion.device_type)
                .where(
                    ParserType.device_type == device_type,
                    ParserVersion.version == ParserType.active_version,
                )
            )
            found = result.first()
        if found is None:
            raise NotFoundError(f"no active parser for device type {device_type!r}")
        return _record(found[0], found[1])

    async def get_version(self, device_type: str, version: int) -> ParserRecord:
        """One stored version of `device_type`."""
        async with self.transaction() as session:
            result = await session.execute(
                select(ParserVersion, ParserType.active_version)
                .join(ParserType, ParserType.device_type == ParserVersion.device_type)
                .where(ParserVersion.device_type == device_type, ParserVersion.version == version)
            )
            found = result.first()
        if found is None:
            raise NotFoundError(f"device type {device_type!r} has no parser version {version}")
        return _record(found[0], found[1])

    async def activate(self, device_type: str, version: int) -> ParserRecord:
        """Make `version` the active one (roll back or forward)."""
        record = await self.get_version(device_type, version)
        async with self.transaction() as session:
            await session.execute(
                update(ParserType)
                .where(ParserType.device_type == device_type)
                .values(active_version=version, updated_at=utcnow())
            )
            await self._announce(session, device_type)
        return dataclasses.replace(record, active=True)

    async def _announce(self, session: AsyncSession, device_type: str) -> None:
        """Tell listening sandboxes (PostgreSQL NOTIFY, sent when the transaction commits)."""
        if self.dialect == "postgresql":
            await session.execute(select(func.pg_notify(PARSER_CHANNEL, device_type)))

    async def list_parsers(self) -> list[ParserSummary]:
        """Every device type with a parser, by name."""
        async with self.transaction() as session:
            rows = (
                await session.scalars(select(ParserType).order_by(ParserType.device_type))
            ).all()
        return [
            ParserSummary(r.device_type, r.latest_version, r.active_version, r.updated_at)
            for r in rows
        ]

    async def list_versions(self, device_type: str) -> list[ParserRecord]:
        """Every version of `device_type`, oldest first."""
        async with self.transaction() as session:
            active = await session.scalar(
                select(ParserType.active_version).where(ParserType.device_type == device_type)
            )
            rows = (
                await session.scalars(
                    select(ParserVersion)
                    .where(ParserVersion.device_type == device_type)
                    .order_by(ParserVersion.version)
                )
            ).all()
        if not rows:
            raise NotFoundError(f"no parser for device type {device_type!r}")
        return [_record(row, active) for row in rows]

    async def active_parsers(self) -> dict[str, ActiveParser]:
        """Device type -> active version and hash: one cheap query, no sources."""
        async with self.transaction() as session:
            result = await session.execute(
                select(ParserVersion.device_type, ParserVersion.version, ParserVersion.sha256)
                .join(ParserType, ParserType.device_type == ParserVersion.device_type)
                .where(ParserVersion.version == ParserType.active_version)
            )
            return {row[0]: ActiveParser(row[0], row[1], row[2]) for row in result}
