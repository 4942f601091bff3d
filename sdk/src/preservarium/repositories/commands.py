"""Pending commands: stored durably, claimed atomically, one per device contact."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ColumnElement, func, select, update

from preservarium.db.models import Command, utcnow
from preservarium.errors import ConflictError, NotFoundError, RepositoryError
from preservarium.repositories.base import SQLRepository


class CommandStatus(StrEnum):
    """Where a command is in its life. `claimed` is internal: a gateway is sending it."""

    QUEUED = "queued"
    CLAIMED = "claimed"
    SENT = "sent"
    FAILED = "failed"
    EXPIRED = "expired"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """One stored command request."""

    id: int
    request_id: str
    device_id: str
    name: str
    body: str
    status: CommandStatus
    reason: str | None
    created_at: datetime
    expires_at: datetime
    sent_at: datetime | None


def _record(row: Command) -> CommandRecord:
    return CommandRecord(
        id=row.id,
        request_id=row.request_id,
        device_id=row.device_id,
        name=row.name,
        body=row.body,
        status=CommandStatus(row.status),
        reason=row.reason,
        created_at=row.created_at,
        expires_at=row.expires_at,
        sent_at=row.sent_at,
    )


def _held_by(claimer: str | None) -> tuple[ColumnElement[bool], ...]:
    """The conditions for a row still claimed by `claimer` (none when it is None)."""
    if claimer is None:
        return ()
    return (Command.status == CommandStatus.CLAIMED.value, Command.claimed_by == claimer)


class SQLCommandRepository(SQLRepository):
    """Commands in SQL. A request id is stored at most once."""

    async def add(
        self, *, request_id: str, device_id: str, name: str, body: str, expires_at: datetime
    ) -> CommandRecord:
        """Store a new queued command; ConflictError if the request id exists.

        A value the database driver cannot encode (a lone surrogate, a NUL on
        PostgreSQL) is a RepositoryError that is not retriable: the same value fails again.
        """
        row = Command(
            request_id=request_id,
            device_id=device_id,
            name=name,
            body=body,
            status=CommandStatus.QUEUED.value,
            created_at=utcnow(),
            expires_at=expires_at,
        )
        try:
            async with self.transaction() as session:
                session.add(row)
        except ConflictError as exc:
            raise ConflictError(f"command request {request_id!r} exists already") from exc
        except (UnicodeError, ValueError) as exc:
            raise RepositoryError(f"the database refused the command: {exc!r}") from exc
        return _record(row)

    async def get(self, request_id: str) -> CommandRecord:
        """One command by its request id."""
        async with self.transaction() as session:
            row = await session.scalar(select(Command).where(Command.request_id == request_id))
        if row is None:
            raise NotFoundError(f"no command request {request_id!r}")
        return _record(row)

    async def list_commands(
        self,
        *,
        device_id: str | None = None,
        statuses: Collection[CommandStatus] = (),
        limit: int = 1000,
    ) -> list[CommandRecord]:
        """Stored commands, newest first, of one device and/or in the given statuses."""
        query = select(Command).order_by(Command.id.desc()).limit(limit)
        if device_id is not None:
            query = query.where(Command.device_id == device_id)
        if statuses:
            query = query.where(Command.status.in_([status.value for status in statuses]))
        async with self.transaction() as session:
            rows = (await session.scalars(query)).all()
        return [_record(row) for row in rows]

    async def cancel(self, request_id: str, *, reason: str) -> CommandRecord:
        """Expire a queued command at once, with `reason`.

        NotFoundError for an unknown request id; ConflictError when the command is no
        longer queued (a gateway has it, or it has ended).
        """
        async with self.transaction() as session:
            row = await session.scalar(
                update(Command)
                .where(
                    Command.request_id == request_id,
                    Command.status == CommandStatus.QUEUED.value,
                )
                .values(status=CommandStatus.EXPIRED.value, reason=reason)
                .returning(Command)
            )
        if row is not None:
            return _record(row)
        current = await self.get(request_id)
        raise ConflictError(f"command request {request_id!r} is {current.status}, not queued")

    async def queued_count(self, device_id: str) -> int:
        """How many commands of `device_id` are queued (expired or not) or claimed."""
        async with self.transaction() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(Command)
                .where(
                    Command.device_id == device_id,
                    Command.status.in_((CommandStatus.QUEUED.value, CommandStatus.CLAIMED.value)),
                )
            )
            return int(count or 0)

    async def pending_device_ids(self) -> set[str]:
        """Devices with at least one queued command (expired or not)."""
        async with self.transaction() as session:
            rows = await session.scalars(
                select(Command.device_id)
                .where(Command.status == CommandStatus.QUEUED.value)
                .distinct()
            )
            return set(rows.all())

    async def claim_next(self, device_id: str, *, claimer: str) -> CommandRecord | None:
        """Atomically take the oldest unexpired queued command of `device_id`, or None.

        Two gateways racing for one command: exactly one UPDATE matches the queued row.
        """
        now = utcnow()
        async with self.transaction() as session:
            while True:
                candidate = await session.scalar(
                    select(Command.id)
                    .where(
                        Command.device_id == device_id,
                        Command.status == CommandStatus.QUEUED.value,
                        Command.expires_at > now,
                    )
                    .order_by(Command.id)
                    .limit(1)
                )
                if candidate is None:
                    return None
                claimed = await session.scalar(
                    update(Command)
                    .where(Command.id == candidate, Command.status == CommandStatus.QUEUED.value)
                    .values(status=CommandStatus.CLAIMED.value, claimed_by=claimer, claimed_at=now)
                    .returning(Command)
                )
                if claimed is not None:
                    return _record(claimed)

    async def finish(
        self,
        request_id: str,
        status: CommandStatus,
        *,
        reason: str | None = None,
        claimer: str | None = None,
    ) -> CommandRecord:
        """Record the outcome of a claimed command (`sent` or `failed`).

        With `claimer`, only while that claimer still holds the claim: a claim the stale
        sweep handed to another gateway is that gateway's to settle, so this one gets
        ConflictError and must not send the command (else it is sent twice).
        """
        values: dict[str, object] = {"status": status.value, "reason": reason}
        if status is CommandStatus.SENT:
            values["sent_at"] = utcnow()
        async with self.transaction() as session:
            row = await session.scalar(
                update(Command)
                .where(Command.request_id == request_id, *_held_by(claimer))
                .values(**values)
                .returning(Command)
            )
        if row is None and claimer is not None:
            raise ConflictError(f"command request {request_id!r} is not claimed by {claimer!r}")
        if row is None:
            raise NotFoundError(f"no command request {request_id!r}")
        return _record(row)

    async def release(self, request_id: str, *, claimer: str | None = None) -> None:
        """Put a claimed command back in the queue (its contact could not carry it).

        With `claimer`, only while that claimer still holds it: requeueing a claim another
        gateway took over would let a third one claim and send it too.
        """
        async with self.transaction() as session:
            await session.execute(
                update(Command)
                .where(
                    Command.request_id == request_id,
                    Command.status == CommandStatus.CLAIMED.value,
                    *_held_by(claimer),
                )
                .values(status=CommandStatus.QUEUED.value, claimed_by=None, claimed_at=None)
            )

    async def requeue_stale_claims(self, older_than: datetime) -> int:
        """Requeue claims taken before `older_than` (their gateway died mid-contact)."""
        async with self.transaction() as session:
            result = await session.execute(
                update(Command)
                .where(
                    Command.status == CommandStatus.CLAIMED.value,
                    Command.claimed_at < older_than,
                )
                .values(status=CommandStatus.QUEUED.value, claimed_by=None, claimed_at=None)
            )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def expire_due(self) -> list[CommandRecord]:
        """Mark every queued command past its expiry as expired; return them."""
        async with self.transaction() as session:
            rows = await session.scalars(
                update(Command)
                .where(Command.status == CommandStatus.QUEUED.value, Command.expires_at <= utcnow())
                .values(status=CommandStatus.EXPIRED.value)
                .returning(Command)
            )
            return [_record(row) for row in rows.all()]
