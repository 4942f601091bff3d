"""The audit log of the operator API: every write, who made it and how it ended."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from preservarium.db.models import AuditEntry, utcnow
from preservarium.repositories.base import SQLRepository

MAX_TARGET = 200


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audited write."""

    id: int
    at: datetime
    token_name: str | None
    method: str
    route: str
    target: str | None
    status: int
    detail: dict[str, Any] = field(default_factory=dict)


def _record(row: AuditEntry) -> AuditRecord:
    return AuditRecord(row.id, row.at, row.token_name, row.method, row.route, row.target,
                       row.status, dict(row.detail or {}))  # fmt: skip


class SQLAuditRepository(SQLRepository):
    """Audit entries in SQL, newest first when read."""

    async def add(
        self,
        *,
        token_name: str | None,
        method: str,
        route: str,
        target: str | None,
        status: int,
        detail: dict[str, Any] | None = None,
    ) -> AuditRecord:
        """Record one write."""
        row = AuditEntry(
            at=utcnow(), token_name=token_name, method=method[:8], route=route[:MAX_TARGET],
            target=None if target is None else target[:MAX_TARGET], status=status,
            detail=dict(detail or {}),
        )  # fmt: skip
        async with self.transaction() as session:
            session.add(row)
        return _record(row)

    async def page(self, *, limit: int = 100, before: int | None = None) -> list[AuditRecord]:
        """Up to `limit` entries, newest first, older than entry `before` when given."""
        query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if before is not None:
            query = query.where(AuditEntry.id < before)
        async with self.transaction() as session:
            rows = (await session.scalars(query)).all()
        return [_record(row) for row in rows]
