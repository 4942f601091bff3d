"""An in-memory CommandStore for the command desk's unit tests: what SQLCommandRepository
promises (atomic claims, claimer checks, expiry by a clock), without a database."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime

from preservarium.errors import ConflictError, NotFoundError
from preservarium.repositories import CommandRecord
from preservarium.repositories.commands import CommandStatus
from preservarium_gateway.types import Clock


@dataclasses.dataclass
class _Row:
    record: CommandRecord
    claimed_by: str | None = None
    claimed_at: datetime | None = None


class InMemoryCommandStore:
    """Commands in a dict, in insertion order; `calls` counts the queries made."""

    def __init__(self, *, clock: Clock = time.time) -> None:
        self._clock = clock
        self._rows: dict[str, _Row] = {}
        self.calls = 0

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def _set(self, row: _Row, status: CommandStatus, **changes: object) -> CommandRecord:
        row.record = dataclasses.replace(row.record, status=status, **changes)  # type: ignore[arg-type]
        return row.record

    async def add(
        self, *, request_id: str, device_id: str, name: str, body: str, expires_at: datetime
    ) -> CommandRecord:
        self.calls += 1
        if request_id in self._rows:
            raise ConflictError(f"command request {request_id!r} exists already")
        record = CommandRecord(
            id=len(self._rows) + 1, request_id=request_id, device_id=device_id, name=name,
            body=body, status=CommandStatus.QUEUED, reason=None, created_at=self._now(),
            expires_at=expires_at, sent_at=None,
        )  # fmt: skip
        self._rows[request_id] = _Row(record)
        return record

    async def get(self, request_id: str) -> CommandRecord:
        self.calls += 1
        if request_id not in self._rows:
            raise NotFoundError(f"no command request {request_id!r}")
        return self._rows[request_id].record

    async def queued_count(self, device_id: str) -> int:
        self.calls += 1
        pending = (CommandStatus.QUEUED, CommandStatus.CLAIMED)
        return sum(
            1 for r in self._rows.values() if r.record.device_id == device_id
            and r.record.status in pending
        )  # fmt: skip

    async def pending_device_ids(self) -> set[str]:
        self.calls += 1
        return {
            r.record.device_id for r in self._rows.values()
            if r.record.status is CommandStatus.QUEUED
        }  # fmt: skip

    async def claim_next(self, device_id: str, *, claimer: str) -> CommandRecord | None:
        self.calls += 1
        now = self._now()
        for row in self._rows.values():
            record = row.record
            if (record.device_id, record.status) == (device_id, CommandStatus.QUEUED) and (
                record.expires_at > now
            ):
                row.claimed_by, row.claimed_at = claimer, now
                return self._set(row, CommandStatus.CLAIMED)
        return None

    async def finish(
        self,
        request_id: str,
        status: CommandStatus,
        *,
        reason: str | None = None,
        claimer: str | None = None,
    ) -> CommandRecord:
        self.calls += 1
        row = self._rows.get(request_id)
        if claimer is not None and (
            row is None or row.record.status is not CommandStatus.CLAIMED
            or row.claimed_by != claimer
        ):  # fmt: skip
            raise ConflictError(f"command request {request_id!r} is not claimed by {claimer!r}")
        if row is None:
            raise NotFoundError(f"no command request {request_id!r}")
        sent_at = self._now() if status is CommandStatus.SENT else None
        return self._set(row, status, reason=reason, sent_at=sent_at)

    async def release(self, request_id: str, *, claimer: str | None = None) -> None:
        self.calls += 1
        row = self._rows.get(request_id)
        if row is None or row.record.status is not CommandStatus.CLAIMED:
            return
        if claimer is None or row.claimed_by == claimer:
            row.claimed_by = row.claimed_at = None
            self._set(row, CommandStatus.QUEUED)

    async def requeue_stale_claims(self, older_than: datetime) -> int:
        self.calls += 1
        stale = [
            row for row in self._rows.values() if row.record.status is CommandStatus.CLAIMED
            and row.claimed_at is not None and row.claimed_at < older_than
        ]  # fmt: skip
        for row in stale:
            row.claimed_by = row.claimed_at = None
            self._set(row, CommandStatus.QUEUED)
        return len(stale)

    async def expire_due(self) -> list[CommandRecord]:
        self.calls += 1
        now = self._now()
        due = [
            row for row in self._rows.values()
            if row.record.status is CommandStatus.QUEUED and row.record.expires_at <= now
        ]  # fmt: skip
        return [self._set(row, CommandStatus.EXPIRED) for row in due]
