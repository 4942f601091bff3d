"""Replays in SQL: what each replay asked for, how far it got, and how it ended.

A replay writes its positions after every published batch (`checkpoint`), so a replay
that was interrupted continues from there (`--resume ID`).

A runner holds a replay with a lease (`acquire`, a compare-and-set on the row): until
it expires, no other runner (another process, another host, the API's background task)
may run the same replay, so the two never publish the same uplinks. The holder renews
it while it runs, and its checkpoints and its end are written only while it still
holds it. A crashed holder's lease expires and another runner takes the replay over.
Expiry is judged by the clocks of the hosts involved: they must agree within seconds.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, or_, select, update

from preservarium.db.models import Replay, utcnow
from preservarium.errors import ConflictError, NotFoundError
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
class Holder:
    """A runner of replays: an id of its own (one per run) and where it runs."""

    id: str
    host: str
    pid: int

    @classmethod
    def here(cls) -> Holder:
        """A new holder in this process."""
        return cls(secrets.token_hex(8), socket.gethostname()[:255], os.getpid())


class LeaseHeldError(ConflictError):
    """Another runner holds the replay, and its lease has not expired."""

    def __init__(self, replay_id: str, holder: Holder, until: datetime) -> None:
        at = until.isoformat(timespec="seconds").replace("+00:00", "Z")
        super().__init__(
            f"replay {replay_id} is running in pid {holder.pid} on host {holder.host}; "
            f"lease until {at}"
        )
        self.holder = holder
        self.until = until


class LeaseLostError(ConflictError):
    """The runner no longer holds the replay (its lease expired and another took it)."""


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
    holder: Holder | None = None
    lease_until: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        """The replay as the CLI's --json (and an API answer) shows it."""
        return {
            "id": self.id, "device_type": self.device_type, "version": self.version,
            "since": self.since, "until": self.until, "device_id": self.device_id,
            "from": self.source, "rate": self.rate, "status": self.status,
            "counts": self.counts, "started_at": self.started_at,
            "updated_at": self.updated_at, "finished_at": self.finished_at,
            "error": self.error, "positions": _positions_json(dict(sorted(self.positions.items()))),
            "held_by": None if self.holder is None else {"host": self.holder.host,
                                                         "pid": self.holder.pid},
            "lease_until": self.lease_until,
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
        holder=_holder(row), lease_until=row.lease_until,
    )  # fmt: skip


def _holder(row: Replay) -> Holder | None:
    if row.owner_id is None:
        return None
    return Holder(row.owner_id, row.owner_host or "?", row.owner_pid or 0)


def _free(now: datetime) -> ColumnElement[bool]:
    """Held by no runner, or by one whose lease has expired."""
    return or_(Replay.owner_id.is_(None), Replay.lease_until.is_(None), Replay.lease_until < now)


_RELEASED: dict[str, Any] = {"owner_id": None, "owner_host": None, "owner_pid": None,
                             "lease_until": None}  # fmt: skip


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

    async def acquire(self, replay_id: str, holder: Holder, lease_s: float) -> ReplayRecord:
        """Hold the replay for `lease_s` seconds and mark it running; the replay as it
        is now. LeaseHeldError while another runner's lease lasts, ConflictError when
        the replay is done, NotFoundError when there is none."""
        now = utcnow()
        taken = await self._set(
            replay_id, _free(now) | (Replay.owner_id == holder.id), Replay.status != DONE,
            owner_id=holder.id, owner_host=holder.host, owner_pid=holder.pid,
            lease_until=now + timedelta(seconds=lease_s), status=RUNNING,
        )  # fmt: skip
        current = await self.get(replay_id)
        if taken:
            return current
        if current.status == DONE:
            raise ConflictError(f"replay {replay_id} is done already")
        assert current.holder is not None and current.lease_until is not None
        raise LeaseHeldError(replay_id, current.holder, current.lease_until)

    async def renew(self, replay_id: str, holder: Holder, lease_s: float) -> None:
        """Extend the holder's lease to `lease_s` from now; LeaseLostError if it holds
        the replay no more."""
        until = utcnow() + timedelta(seconds=lease_s)
        await self._held(replay_id, holder, lease_until=until)

    async def checkpoint(
        self, replay: ReplayRecord, *, holder: Holder | None = None, lease_s: float = 0
    ) -> None:
        """Store how far the replay got (positions and counts), still running. With a
        `holder`: only while it holds the replay (LeaseLostError otherwise), renewing
        its lease for `lease_s`."""
        values: dict[str, Any] = {
            "status": RUNNING, "positions": _positions_json(replay.positions),
            "counts": dict(replay.counts), "error": None, "finished_at": None,
        }  # fmt: skip
        if holder is None:
            await self._update(replay.id, **values)
            return
        until = utcnow() + timedelta(seconds=lease_s)
        await self._held(replay.id, holder, lease_until=until, **values)

    async def finish(
        self, replay: ReplayRecord, status: str, error: str | None = None, *,
        holder: Holder | None = None,
    ) -> None:  # fmt: skip
        """Store how the replay ended, with its last positions and counts, and release
        its lease. With a `holder`: only while it holds the replay (LeaseLostError
        otherwise); without: only while no runner holds it (LeaseHeldError otherwise)."""
        if status not in STATUSES or status == RUNNING:
            raise ValueError(f"not a final replay status: {status!r}")
        values: dict[str, Any] = {
            "status": status, "positions": _positions_json(replay.positions),
            "counts": dict(replay.counts),
            "error": None if error is None else error[:MAX_ERROR_CHARS],
            "finished_at": utcnow() if status == DONE else None, **_RELEASED,
        }  # fmt: skip
        if holder is not None:
            await self._held(replay.id, holder, **values)
        elif not await self._set(replay.id, _free(utcnow()), **values):
            current = await self.get(replay.id)  # NotFoundError when there is none
            assert current.holder is not None and current.lease_until is not None
            raise LeaseHeldError(replay.id, current.holder, current.lease_until)

    async def _held(self, replay_id: str, holder: Holder, **values: Any) -> None:
        if not await self._set(replay_id, Replay.owner_id == holder.id, **values):
            raise LeaseLostError(
                f"replay {replay_id} is no longer held by this runner: its lease expired "
                "and another runner took it over"
            )

    async def _set(self, replay_id: str, *conditions: ColumnElement[bool], **values: Any) -> bool:
        """Update the replay where `conditions` hold (a compare-and-set); whether it did."""
        query = update(Replay).where(Replay.id == replay_id, *conditions)
        async with self.transaction() as session:
            result = await session.execute(query.values(updated_at=utcnow(), **values))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def _update(self, replay_id: str, **values: Any) -> None:
        if not await self._set(replay_id, **values):
            raise NotFoundError(f"no replay has id {replay_id!r}")
