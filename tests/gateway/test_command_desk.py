"""The command desk against an in-memory store and publisher (unit tier: no database, no
broker, no waiting). The same behaviour against PostgreSQL, SQLite and Kafka is covered by
test_commands.py, test_command_bounds.py and test_command_poison.py."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from preservarium.contract.command_requests import CommandRequest
from preservarium.contract.contact import Contact
from preservarium.contract.kinds import ErrorKind
from preservarium.contract.topics import Topics
from preservarium.errors import ConflictError
from preservarium.repositories import CommandRecord
from preservarium.repositories.commands import CommandStatus
from preservarium.sandbox_answers import CommandAnswer, ParseAnswer, ScriptError
from preservarium.sandbox_client import CommandInput, SandboxRequestError, SandboxUnavailableError
from preservarium_gateway.commands import CommandDesk
from preservarium_gateway.config import GatewayLimits

from tests.support.clock import SteppedClock
from tests.support.command_store import InMemoryCommandStore

TTL_S = 3600.0


class Published:
    """The RecordPublisher contract in memory: every record is taken."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    async def publish(self, topic: str, value: bytes, key: bytes | None) -> None:
        record = json.loads(value)
        assert topic == "unit.command.status"
        assert key == (record["device_id"] or "").encode() or key is None
        self.records.append(record)


class Desk:
    """A desk, its store, what it published and the clock both share."""

    def __init__(
        self,
        store: InMemoryCommandStore | None = None,
        clock: SteppedClock | None = None,
        **options: Any,
    ) -> None:
        self.clock = clock or SteppedClock(time.time)
        self.store = store or InMemoryCommandStore(clock=self.clock)
        self.published = Published()
        limits = GatewayLimits(**options.pop("limits", {}))
        self.desk = CommandDesk(
            repository=self.store, publisher=self.published, topics=Topics.with_prefix("unit."),
            limits=limits, claimer=options.pop("claimer", "gw-a"), clock=self.clock, **options,
        )  # fmt: skip

    def request(self, request_id: str, device_id: str = "dev-1", **params: Any) -> CommandRequest:
        expires_at = datetime.fromtimestamp(self.clock() + TTL_S, UTC)
        return CommandRequest(request_id, device_id, "set_period", params, expires_at)

    async def statuses(self) -> list[tuple[str, str]]:
        """(request_id, status) of every status published so far."""
        assert await self.desk.outbox.flush()
        return [(r["request_id"], r["status"]) for r in self.published.records]

    async def last(self) -> dict[str, Any]:
        assert await self.desk.outbox.flush()
        return self.published.records[-1]


class TestStore:
    async def test_a_request_is_stored_queued_and_its_device_indexed(self) -> None:
        unit = Desk()
        await unit.desk.store(unit.request("r1", seconds=60))
        assert await unit.statuses() == [("r1", "queued")]
        assert "dev-1" in unit.desk.index
        stored = await unit.store.get("r1")
        assert stored.status is CommandStatus.QUEUED
        assert json.loads(stored.body) == {"params": {"seconds": 60}}

    async def test_the_same_request_again_is_a_no_op(self) -> None:
        unit = Desk()
        await unit.desk.store(unit.request("r1", seconds=60))
        await unit.desk.store(unit.request("r1", seconds=60))
        assert await unit.statuses() == [("r1", "queued")]

    async def test_a_request_id_reused_for_another_device_is_rejected(self) -> None:
        unit = Desk()
        await unit.desk.store(unit.request("r1"))
        await unit.desk.store(unit.request("r1", "dev-2"))
        assert await unit.statuses() == [("r1", "queued"), ("r1", "rejected")]
        assert (await unit.store.get("r1")).device_id == "dev-1"


class TestQueueLimit:
    async def test_past_the_limit_a_request_is_rejected_and_not_stored(self) -> None:
        unit = Desk(limits={"command_queue_limit": 2})
        for n in range(3):
            await unit.desk.store(unit.request(f"r{n}"))
        assert await unit.statuses() == [("r0", "queued"), ("r1", "queued"), ("r2", "rejected")]
        assert await unit.store.queued_count("dev-1") == 2

    async def test_at_the_limit_a_redelivery_of_a_stored_request_is_not_rejected(self) -> None:
        unit = Desk(limits={"command_queue_limit": 1})
        await unit.desk.store(unit.request("r0"))
        await unit.desk.store(unit.request("r0"))
        assert await unit.statuses() == [("r0", "queued")]

    async def test_a_claimed_command_still_counts_and_a_sent_one_frees_its_place(self) -> None:
        unit = Desk(limits={"command_queue_limit": 1})
        await unit.desk.store(unit.request("r0"))
        claimed = await unit.desk.claim("dev-1")
        assert claimed is not None
        await unit.desk.store(unit.request("r1"))
        await unit.desk.sent(claimed, b"\x01")
        await unit.desk.store(unit.request("r2"))
        assert await unit.statuses() == [
            ("r0", "queued"), ("r1", "rejected"), ("r0", "sent"), ("r2", "queued"),
        ]  # fmt: skip


class TestClaim:
    async def test_oldest_first_one_per_claim(self) -> None:
        unit = Desk()
        for n in range(3):
            await unit.desk.store(unit.request(f"r{n}"))
        claimed = [await unit.desk.claim("dev-1") for _ in range(4)]
        assert [c.request_id if c else None for c in claimed] == ["r0", "r1", "r2", None]

    async def test_a_device_without_commands_costs_no_query(self) -> None:
        unit = Desk()
        await unit.desk.store(unit.request("r0"))
        before = unit.store.calls
        assert await unit.desk.claim("dev-other") is None
        assert unit.store.calls == before

    async def test_an_emptied_device_leaves_the_index(self) -> None:
        unit = Desk()
        await unit.desk.store(unit.request("r0"))
        assert await unit.desk.claim("dev-1") is not None
        assert await unit.desk.claim("dev-1") is None
        assert "dev-1" not in unit.desk.index

    async def test_stored_params_that_no_longer_pass_are_failed_and_the_next_is_claimed(
        self,
    ) -> None:
        unit = Desk()
        await unit.store.add(
            request_id="bad", device_id="dev-1", name="x", body='{"params": [1]}',
            expires_at=datetime.fromtimestamp(unit.clock() + TTL_S, UTC),
        )  # fmt: skip
        await unit.desk.store(unit.request("good"))
        claimed = await unit.desk.claim("dev-1")
        assert claimed is not None and claimed.request_id == "good"
        assert (await unit.store.get("bad")).status is CommandStatus.FAILED
        assert ("bad", "failed") in await unit.statuses()

    async def test_two_desks_on_one_store_claim_each_command_once(self) -> None:
        first = Desk(claimer="gw-a")
        second = Desk(first.store, first.clock, claimer="gw-b")
        for n in range(5):
            await first.desk.store(first.request(f"r{n}"))
        await second.desk.refresh()
        claimed = []
        for _ in range(5):
            for unit in (first, second):
                command = await unit.desk.claim("dev-1")
                if command is not None:
                    claimed.append(command.request_id)
        assert sorted(claimed) == [f"r{n}" for n in range(5)]


class TestSettle:
    async def test_sent_reports_the_bytes_and_stores_the_outcome(self) -> None:
        unit = Desk()
        await unit.desk.store(unit.request("r0"))
        claimed = await unit.desk.claim("dev-1")
        assert claimed is not None
        await unit.desk.sent(claimed, b"\x10\x3c")
        last = await unit.last()
        assert (last["status"], base64.b64decode(last["payload_b64"])) == ("sent", b"\x10\x3c")
        assert (await unit.store.get("r0")).status is CommandStatus.SENT

    async def test_failed_is_final_with_its_reason(self) -> None:
        unit = Desk()
        await unit.desk.store(unit.request("r0"))
        claimed = await unit.desk.claim("dev-1")
        assert claimed is not None
        await unit.desk.failed(claimed, "format_command raised")
        last = await unit.last()
        assert (last["status"], last["reason"]) == ("failed", "format_command raised")
        assert await unit.desk.claim("dev-1") is None

    async def test_a_released_command_rides_on_the_next_contact(self) -> None:
        unit = Desk()
        await unit.desk.store(unit.request("r0"))
        claimed = await unit.desk.claim("dev-1")
        assert claimed is not None
        assert await unit.desk.claim("dev-1") is None  # the device left the index
        await unit.desk.release(claimed)
        again = await unit.desk.claim("dev-1")
        assert again is not None and again.request_id == "r0"
        assert await unit.statuses() == [("r0", "queued")]  # a release reports nothing


class TestAttemptsBound:
    async def test_a_command_the_sandbox_never_answers_for_fails_after_max_attempts(
        self,
    ) -> None:
        unit = Desk(max_attempts=3)
        await unit.desk.store(unit.request("r0"))
        for attempt in range(1, 4):
            claimed = await unit.desk.claim("dev-1")
            assert claimed is not None, attempt
            await unit.desk.retry_later(claimed, "no answer in time")
        assert await unit.desk.claim("dev-1") is None
        last = await unit.last()
        assert last["status"] == "failed" and last["reason"].startswith("sandbox_unavailable")
        assert unit.desk.counted == 0

    async def test_a_sent_command_forgets_its_attempts(self) -> None:
        unit = Desk(max_attempts=3)
        await unit.desk.store(unit.request("r0"))
        claimed = await unit.desk.claim("dev-1")
        assert claimed is not None
        await unit.desk.retry_later(claimed, "no answer in time")
        assert unit.desk.counted == 1
        claimed = await unit.desk.claim("dev-1")
        assert claimed is not None
        await unit.desk.sent(claimed, b"\x01")
        assert unit.desk.counted == 0

    async def test_counted_commands_are_bounded_oldest_dropped(self) -> None:
        unit = Desk(max_attempts=3, max_counted=2)
        for n in range(3):
            await unit.desk.store(unit.request(f"r{n}", f"dev-{n}"))
        for n in range(3):
            claimed = await unit.desk.claim(f"dev-{n}")
            assert claimed is not None
            await unit.desk.retry_later(claimed, "no answer in time")
        assert unit.desk.counted == 2


class TestExpiry:
    async def test_a_command_past_its_time_is_expired_reported_and_never_claimed(
        self,
    ) -> None:
        unit = Desk()
        await unit.desk.store(unit.request("r0"))
        unit.clock.advance(TTL_S + 1)
        assert await unit.desk.claim("dev-1") is None  # due, even before the sweep
        await unit.desk.housekeep()
        assert await unit.statuses() == [("r0", "queued"), ("r0", "expired")]
        assert (await unit.store.get("r0")).status is CommandStatus.EXPIRED
        assert "dev-1" not in unit.desk.index

    async def test_a_command_within_its_time_is_kept(self) -> None:
        unit = Desk()
        await unit.desk.store(unit.request("r0"))
        unit.clock.advance(TTL_S - 1)
        await unit.desk.housekeep()
        assert await unit.statuses() == [("r0", "queued")]
        assert "dev-1" in unit.desk.index

    async def test_an_expired_command_forgets_its_attempts(self) -> None:
        unit = Desk(max_attempts=3)
        await unit.desk.store(unit.request("r0"))
        claimed = await unit.desk.claim("dev-1")
        assert claimed is not None
        await unit.desk.retry_later(claimed, "no answer in time")
        unit.clock.advance(TTL_S + 1)
        await unit.desk.housekeep()
        assert unit.desk.counted == 0


class TestStaleClaims:
    async def test_a_claim_older_than_stale_claim_s_is_queued_again(self) -> None:
        unit = Desk(limits={"stale_claim_s": 60.0})
        await unit.desk.store(unit.request("r0"))
        claimed = await unit.desk.claim("dev-1")  # and the gateway dies mid-contact
        assert claimed is not None
        unit.clock.advance(59.0)
        await unit.desk.housekeep()
        assert (await unit.store.get("r0")).status is CommandStatus.CLAIMED
        unit.clock.advance(2.0)
        await unit.desk.housekeep()
        assert (await unit.store.get("r0")).status is CommandStatus.QUEUED
        assert "dev-1" in unit.desk.index

    async def test_the_late_claimer_cannot_settle_a_swept_claim(self) -> None:
        first = Desk(claimer="gw-a", limits={"stale_claim_s": 60.0})
        second = Desk(first.store, first.clock, claimer="gw-b")
        await first.desk.store(first.request("r0"))
        claimed = await first.desk.claim("dev-1")
        assert claimed is not None
        first.clock.advance(61.0)  # the clock both gateways and the store share
        await first.desk.housekeep()
        await second.desk.refresh()
        taken = await second.desk.claim("dev-1")
        assert taken is not None and taken.request_id == "r0"
        with pytest.raises(ConflictError):
            await first.desk.sent(claimed, b"\x01")
        await second.desk.sent(taken, b"\x01")
        assert [s for _, s in await second.statuses()] == ["sent"]


async def test_status_times_come_from_the_desks_clock() -> None:
    unit = Desk()
    unit.clock.advance(86_400.0)
    unit.desk.emit("queued", request_id="r0", device_id="dev-1")
    at = datetime.fromisoformat((await unit.last())["at"].replace("Z", "+00:00"))
    assert at - datetime.now(UTC) > timedelta(hours=23)


class FormatSandbox:
    """A ParserService whose format_command answers (or raises) what the test set."""

    def __init__(self, answer: CommandAnswer | Exception) -> None:
        self.answer = answer
        self.asked: list[tuple[str, CommandInput]] = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def parse(self, contact: Contact, **_: Any) -> ParseAnswer:
        raise AssertionError("the desk never parses")

    async def format_command(
        self, device_type: str, command: CommandInput, *, timeout_s: float | None = None
    ) -> CommandAnswer:
        self.asked.append((device_type, command))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


class TestDeliver:
    async def _claimed(self, unit: Desk) -> CommandRecord:
        await unit.desk.store(unit.request("r0", seconds=900))
        claimed = await unit.desk.claim("dev-1")
        assert claimed is not None
        return claimed

    async def test_formatted_bytes_are_returned_and_the_command_is_sent(self) -> None:
        sandbox = FormatSandbox(CommandAnswer(payload=b"\x10\x3c"))
        unit = Desk(sandbox=sandbox)
        claimed = await self._claimed(unit)
        assert await unit.desk.deliver(claimed, device_type="thermo", formatted=None) == b"\x10\x3c"
        ((device_type, asked),) = sandbox.asked
        assert (device_type, asked.command, json.loads(asked.params_json)) == (
            "thermo", "set_period", {"seconds": 900},
        )  # fmt: skip
        assert (await unit.last())["status"] == "sent"

    async def test_an_answer_formatted_by_the_parse_call_asks_the_sandbox_nothing(self) -> None:
        sandbox = FormatSandbox(AssertionError("asked twice"))
        unit = Desk(sandbox=sandbox)
        claimed = await self._claimed(unit)
        formatted = CommandAnswer(payload=b"\x01")
        assert await unit.desk.deliver(claimed, device_type="t", formatted=formatted) == b"\x01"
        assert sandbox.asked == []

    async def test_a_script_error_fails_the_command_with_its_kind(self) -> None:
        error = ScriptError(ErrorKind.RUNTIME_ERROR, "boom", 3)
        unit = Desk(sandbox=FormatSandbox(CommandAnswer(error=error)))
        claimed = await self._claimed(unit)
        assert await unit.desk.deliver(claimed, device_type="t", formatted=None) is None
        last = await unit.last()
        assert last["status"] == "failed" and last["reason"].startswith("runtime_error")
        assert await unit.desk.claim("dev-1") is None

    async def test_a_refused_request_is_final(self) -> None:
        unit = Desk(sandbox=FormatSandbox(SandboxRequestError("too large")))
        claimed = await self._claimed(unit)
        assert await unit.desk.deliver(claimed, device_type="t", formatted=None) is None
        last = await unit.last()
        assert last["status"] == "failed" and last["reason"].startswith("invalid_output")

    async def test_an_unavailable_sandbox_queues_it_again_until_the_attempts_run_out(
        self,
    ) -> None:
        unit = Desk(sandbox=FormatSandbox(SandboxUnavailableError("no answer")), max_attempts=2)
        claimed = await self._claimed(unit)
        assert await unit.desk.deliver(claimed, device_type="t", formatted=None) is None
        assert (await unit.store.get("r0")).status is CommandStatus.QUEUED
        again = await unit.desk.claim("dev-1")
        assert again is not None
        assert await unit.desk.deliver(again, device_type="t", formatted=None) is None
        last = await unit.last()
        assert last["status"] == "failed" and last["reason"].startswith("sandbox_unavailable")
