"""The replay repository on PostgreSQL and SQLite."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

import pytest
from preservarium.errors import ConflictError, NotFoundError
from preservarium.repositories import ReplayRecord, Span, SQLReplayRepository
from preservarium.repositories.replays import (
    DONE,
    FAILED,
    INTERRUPTED,
    RUNNING,
    Holder,
    LeaseHeldError,
    LeaseLostError,
)
from sqlalchemy.ext.asyncio import AsyncEngine

SINCE = datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = datetime(2026, 11, 2, tzinfo=UTC)


def replay(replay_id: str = "r1", **changes: object) -> ReplayRecord:
    values: dict[str, object] = {
        "id": replay_id, "device_type": "efento", "version": 3, "since": SINCE,
        "until": UNTIL, "device_id": None, "source": "raw", "rate": 100,
        "positions": {0: Span(4, 4, 10), 2: Span(0, 0, 0)},
    }  # fmt: skip
    values.update(changes)
    return ReplayRecord(**values)  # type: ignore[arg-type]


async def test_a_created_replay_reads_back_running(engine: AsyncEngine) -> None:
    repository = SQLReplayRepository(engine)
    await repository.create(replay(device_id="dev-1", source="failed"))
    stored = await repository.get("r1")
    assert stored.status == RUNNING
    assert (stored.device_type, stored.version, stored.device_id) == ("efento", 3, "dev-1")
    assert (stored.since, stored.until, stored.source, stored.rate) == (SINCE, UNTIL, "failed", 100)
    assert stored.positions == {0: Span(4, 4, 10), 2: Span(0, 0, 0)}
    assert stored.started_at is not None and stored.finished_at is None


async def test_checkpoints_and_the_end_are_stored(engine: AsyncEngine) -> None:
    repository = SQLReplayRepository(engine)
    created = await repository.create(replay())
    moved = created.moved({0: Span(4, 7, 10), 2: Span(0, 0, 0)}, {"replayed": 3})
    await repository.checkpoint(moved)
    stored = await repository.get("r1")
    assert stored.positions[0].next == 7 and not stored.positions[0].done
    assert stored.counts == {"replayed": 3}
    await repository.finish(moved, INTERRUPTED, "stopped")
    assert (await repository.get("r1")).status == INTERRUPTED
    finished = moved.moved({0: Span(4, 10, 10), 2: Span(0, 0, 0)}, {"replayed": 6})
    await repository.finish(finished, DONE)
    stored = await repository.get("r1")
    assert (stored.status, stored.error, stored.counts) == (DONE, None, {"replayed": 6})
    assert stored.finished_at is not None and all(s.done for s in stored.positions.values())


async def test_a_failure_keeps_its_error(engine: AsyncEngine) -> None:
    repository = SQLReplayRepository(engine)
    created = await repository.create(replay())
    await repository.finish(created, FAILED, "sandbox unavailable" * 500)
    stored = await repository.get("r1")
    assert stored.status == FAILED and stored.error is not None
    assert len(stored.error) == 2000 and stored.finished_at is None


async def test_list_is_newest_first_and_unknown_ids_are_not_found(engine: AsyncEngine) -> None:
    repository = SQLReplayRepository(engine)
    await repository.create(replay("a"))
    await repository.create(replay("b"))
    assert {r.id for r in await repository.list()} == {"a", "b"}
    with pytest.raises(ConflictError):
        await repository.create(replay("a"))
    with pytest.raises(NotFoundError):
        await repository.get("nope")
    with pytest.raises(NotFoundError):
        await repository.checkpoint(replay("nope"))


class TestLease:
    """A running replay is held by one runner at a time (a compare-and-set on the row)."""

    async def test_a_second_runner_is_refused_while_the_lease_lasts(
        self, engine: AsyncEngine
    ) -> None:
        repository = SQLReplayRepository(engine)
        await repository.create(replay())
        first, second = Holder("a" * 16, "host-a", 101), Holder("b" * 16, "host-b", 202)
        held = await repository.acquire("r1", first, 60)
        assert held.holder == first and held.status == RUNNING
        with pytest.raises(LeaseHeldError) as refused:
            await repository.acquire("r1", second, 60)
        assert re.fullmatch(
            r"replay r1 is running in pid 101 on host host-a; lease until "
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",
            str(refused.value),
        )
        assert refused.value.holder == first
        with pytest.raises(LeaseHeldError):  # nor may anyone store its end meanwhile
            await repository.finish(replay(), INTERRUPTED, "interrupted")
        await repository.renew("r1", first, 60)
        await repository.checkpoint(replay(counts={"replayed": 3}), holder=first, lease_s=60)
        assert (await repository.get("r1")).counts == {"replayed": 3}

    async def test_an_expired_lease_is_taken_over_and_the_old_holder_writes_nothing(
        self, engine: AsyncEngine
    ) -> None:
        repository = SQLReplayRepository(engine)
        await repository.create(replay())
        first, second = Holder("a" * 16, "host-a", 101), Holder("b" * 16, "host-b", 202)
        await repository.acquire("r1", first, 0.05)
        await asyncio.sleep(0.1)
        taken = await repository.acquire("r1", second, 60)
        assert taken.holder == second
        with pytest.raises(LeaseLostError):
            await repository.renew("r1", first, 60)
        with pytest.raises(LeaseLostError):
            await repository.checkpoint(replay(counts={"replayed": 9}), holder=first, lease_s=60)
        with pytest.raises(LeaseLostError):
            await repository.finish(replay(), FAILED, "late", holder=first)
        assert (await repository.get("r1")).counts == {}
        await repository.finish(replay(), DONE, holder=second)
        ended = await repository.get("r1")
        assert ended.status == DONE and ended.holder is None and ended.lease_until is None

    async def test_a_done_replay_cannot_be_held_and_an_unknown_one_is_not_found(
        self, engine: AsyncEngine
    ) -> None:
        repository = SQLReplayRepository(engine)
        await repository.create(replay())
        await repository.finish(replay(), DONE)
        with pytest.raises(ConflictError, match="done already"):
            await repository.acquire("r1", Holder.here(), 60)
        with pytest.raises(NotFoundError):
            await repository.acquire("nope", Holder.here(), 60)


async def test_a_held_replay_shows_who_holds_it_until_it_ends(engine: AsyncEngine) -> None:
    repository = SQLReplayRepository(engine)
    await repository.create(replay())
    holder = Holder("c" * 16, "gw-1", 303)
    await repository.acquire("r1", holder, 60)
    shown = (await repository.get("r1")).as_json()
    assert shown["held_by"] == {"host": "gw-1", "pid": 303} and shown["lease_until"] is not None
    await repository.finish(replay(), INTERRUPTED, "interrupted", holder=holder)
    shown = (await repository.get("r1")).as_json()
    assert shown["held_by"] is None and shown["lease_until"] is None
