"""Replays in SQL: what each replay asked for, how far it got, and how it ended.

A replay writes its positions after every published batch (`checkpoint`), so a replay
that was interrupted continues from there (`--resume ID`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from preservarium.db.models import Replay, utcnow
from preservarium.errors import NotFoundError
from preservarium.repositories.base import SQLRepository

# Status values: running (or died running: `updated_at` tells how long ago), done,
# failed (`error` says why), interrupted (stopped on purpose, e.g. Ctrl-C).
RUNNING, DONE, FAILED, INTERRUPTED = "running", "done", "failed", "interrupted"
STATUSES = (RUNNING, DONE, FAILED, INTERRUPTED)
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True, slots=True)
class Span:
    """One partition of the source topic: first offset, next offset to read, stop offset."""

    start: int
    next: int
    end: int

    @property
    def done(self) -> bool:
        """True once every offset of the span was read."""
        return self.next >= self.end


@dataclass(frozen=True, slots=True)
class ReplayRecord:
    """One stored replay."""

    id: str
    device_type: str
    version: int
    since: datetime
    until: datetime
    device_id: str | None
    source: str
    rate: int
    status: str = RUNNING
    positions: dict[int, Span] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    started_at: datetime | None = None
    updated_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The replay as the CLI's --json (and an API answer) shows it."""
        return {
            "id": self.id, "device_type": self.device_type, "version": self.version,
            "since": self.since, "until": self.until, "device_id": self.device_id,
            "from": self.source, "rate": self.rate, "status": self.status,
            "counts": self.counts, "started_at": self.started_at,
            "updated_at": self.updated_at, "finished_at": self.finished_at,
            "error": self.error, "positions": _positions_json(dict(sorted(self.positions.items()))),
        }  # fmt: skip

    def moved(self, positions: dict[int, Span], counts: dict[str, int]) -> ReplayRecord:
        """The same replay, further along."""
        return replace(self, positions=positions, counts=counts)


def _positions_json(positions: dict[int, Span]) -> dict[str, Any]:
    return {str(p): {"start": s.start, "next": s.next, "end": s.end} for p, s in positions.items()}


def _positions(value: dict[str, Any]) -> dict[int, Span]:
    return {int(p): Span(int(s["start"]), int(s["next"]), int(s["end"])) for p, s in value.items()}


def _record(row: Replay) -> ReplayRecord:
    return ReplayRecord(
        id=row.id, device_type=row.device_type, version=row.version, since=row.since,
        until=row.until, device_id=row.device_id, source=row.source, rate=row.rate,
        status=row.status, positions=_positions(row.positions or {}),
        counts={k: int(v) for k, v in (row.counts or {}).items()}, started_at=row.started_at,
        updated_at=row.updated_at, finished_at=row.finished_at, error=row.error,
    )  # fmt: skip


class SQLReplayRepository(SQLRepository):
    """Replays in SQL."""

    async def create(self, replay: ReplayRecord) -> ReplayRecord:
        """Store a new replay, running; ConflictError if the id is taken."""
        now = utcnow()
        row = Replay(
            id=replay.id, device_type=replay.device_type, version=replay.version,
            since=replay.since, until=replay.until, device_id=replay.device_id,
            source=replay.source, rate=replay.rate, status=RUNNING,
            positions=_positions_json(replay.positions), counts=dict(replay.counts),
            started_at=now, updated_at=now,
        )  # fmt: skip
        async with self.transaction() as session:
            session.add(row)
        return _record(row)

    async def get(self, replay_id: str) -> ReplayRecord:
        """One replay; NotFoundError if there is none with this id."""
        async with self.transaction() as session:
            row = await session.get(Replay, replay_id)
        if row is None:
            raise NotFoundError(f"no replay has id {replay_id!r}")
        return _record(row)

    async def list(self, *, limit: int = 100) -> list[ReplayRecord]:
        """The most recent replays, newest first."""
        query = select(Replay).order_by(Replay.started_at.desc(), Replay.id).limit(limit)
        async with self.transaction() as session:
            rows = (await session.scalars(query)).all()
        return [_record(row) for row in rows]

    async def checkpoint(self, replay: ReplayRecord) -> None:
        """Store how far the replay got (positions and counts), still running."""
        await self._update(
            replay.id, status=RUNNING, positions=_positions_json(replay.positions),
            counts=dict(replay.counts), error=None, finished_at=None,
        )  # fmt: skip

    async def finish(self, replay: ReplayRecord, status: str, error: str | None = None) -> None:
        """Store how the replay ended, with its last positions and counts."""
        if status not in STATUSES or status == RUNNING:
            raise ValueError(f"not a final replay status: {status!r}")
        await self._update(
            replay.id, status=status, positions=_positions_json(replay.positions),
            counts=dict(replay.counts), error=None if error is None else error[:MAX_ERROR_CHARS],
            finished_at=utcnow() if status == DONE else None,
        )  # fmt: skip

    async def _update(self, replay_id: str, **values: Any) -> None:
        async with self.transaction() as session:
            result = await session.execute(
                update(Replay).where(Replay.id == replay_id).values(updated_at=utcnow(), **values)
            )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise NotFoundError(f"no replay has id {replay_id!r}")
