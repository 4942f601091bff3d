"""The replay's pure parts: windows, offsets by time, diffs, the rate bound."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka.structs import OffsetAndTimestamp
from preservarium.replay import ReplayError
from preservarium.replay.outcomes import changes
from preservarium.replay.pace import FLOOR_DIVISOR, Pace
from preservarium.replay.run import batch_size
from preservarium.replay.topics import trusted_offset
from preservarium.replay.window import window

from tests.support.clock import SteppedClock

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


class TestWindow:
    def test_durations_count_back_from_now(self) -> None:
        found = window("2h", None, now=NOW)
        assert (found.since, found.until) == (NOW - timedelta(hours=2), NOW)
        assert window("7d", "30m", now=NOW).until == NOW - timedelta(minutes=30)
        assert window(None, None, now=NOW).since == NOW - timedelta(hours=24)

    def test_rfc3339_with_a_zone(self) -> None:
        found = window("2026-11-30T08:00:00Z", "2026-11-30T10:00:00+01:00", now=NOW)
        assert found.since == datetime(2026, 11, 30, 8, tzinfo=UTC)
        assert found.until == datetime(2026, 11, 30, 9, tzinfo=UTC)

    def test_the_future_is_cut_at_now(self) -> None:
        assert window("1h", "2027-01-01T00:00:00Z", now=NOW).until == NOW

    @pytest.mark.parametrize(
        ("since", "until"),
        [
            ("yesterday", None),
            ("2026-11-30T08:00:00", None),
            ("1h", "2h"),
            ("-2h", None),
            ("2x", None),
        ],
    )
    def test_bad_windows_are_refused(self, since: str, until: str | None) -> None:
        with pytest.raises(ReplayError) as caught:
            window(since, until, now=NOW)
        assert caught.value.kind == "bad_window" and not caught.value.retriable


class TestOffsetsByTime:
    def test_an_answer_at_or_after_the_time_is_used(self) -> None:
        assert trusted_offset(OffsetAndTimestamp(7, 1000), 1000, 20) == 7
        assert trusted_offset(OffsetAndTimestamp(7, 1500), 1000, 20) == 7

    def test_no_record_after_the_time_starts_at_the_end(self) -> None:
        assert trusted_offset(None, 1000, 20) == 20

    def test_an_answer_without_its_timestamp_means_scan(self) -> None:
        # Tansu: offset 0, timestamp -1, whatever the time asked.
        assert trusted_offset(OffsetAndTimestamp(0, -1), 1000, 20) is None
        assert trusted_offset(OffsetAndTimestamp(0, 900), 1000, 20) is None


class TestChanges:
    def test_leaves_that_differ_by_path(self) -> None:
        before = {"data": {"m": [{"v": 1}, {"v": 2}], "k": "a"}, "warnings": []}
        after = {"data": {"m": [{"v": 1}, {"v": 3}, {"v": 4}], "k": "a"}, "warnings": ["w"]}
        assert [c.as_json() for c in changes(before, after)] == [
            {"path": "data.m[1].v", "before": 2, "after": 3},
            {"path": "data.m[2]", "after": {"v": 4}},
            {"path": "warnings[0]", "after": "w"},
        ]

    def test_types_count(self) -> None:
        assert [c.path for c in changes({"v": 1}, {"v": 1.0})] == ["v"]
        assert [c.path for c in changes({"v": True}, {"v": 1})] == ["v"]
        assert changes({"v": [1, {"a": None}]}, {"v": [1, {"a": None}]}) == []


async def test_the_pace_bounds_the_rate() -> None:
    loop = asyncio.get_running_loop()
    pace = Pace(50)
    started = loop.time()
    await pace.take(50)  # a full bucket: at once
    assert loop.time() - started < 0.2
    await pace.take(25)
    assert loop.time() - started >= 0.45
    assert batch_size(1) == 1 and batch_size(200) == 50 and batch_size(100_000) == 200


class TestPaceYields:
    """The replay slows down while others need the machine, and only then."""

    def test_batches_at_their_usual_speed_keep_the_full_rate(self) -> None:
        pace = Pace(200)
        for seconds in (0.10, 0.12, 0.09, 0.15, 0.11):  # jitter under twice the best
            pace.observe(50, seconds)
        assert pace.rate == 200 and pace.yielded == 0

    def test_a_slow_batch_halves_the_rate_down_to_its_floor_and_never_below(self) -> None:
        pace = Pace(200)
        pace.observe(50, 0.1)
        pace.observe(50, 0.5)  # live traffic took the workers: 5x slower
        assert pace.rate == 100 and pace.yielded == 1
        for _ in range(10):
            pace.observe(50, 0.5)
        assert pace.rate == 200 / FLOOR_DIVISOR

    def test_the_rate_climbs_back_by_a_tenth_once_batches_are_fast_again(self) -> None:
        pace = Pace(200)
        pace.observe(50, 0.1)
        pace.observe(50, 1.0)
        pace.observe(50, 1.0)
        assert pace.rate == 50
        pace.observe(50, 0.1)
        assert pace.rate == 70
        for _ in range(20):
            pace.observe(50, 0.1)
        assert pace.rate == 200

    def test_an_unlucky_best_is_forgotten_slowly(self) -> None:
        pace = Pace(200)
        pace.observe(50, 0.01)  # one batch far faster than the machine usually is
        for _ in range(200):
            pace.observe(50, 0.1)
        assert pace.rate == 200  # the baseline drifted up to the usual speed

    def test_a_device_waiting_behind_the_replay_halves_the_rate_from_the_first_batch(
        self,
    ) -> None:
        pace = Pace(200)
        # Live traffic was there before the replay: every batch is as slow as the first,
        # so its own baseline sees nothing; the sandbox saw devices wait behind it.
        pace.observe(50, 0.5, live_waited=3)
        assert pace.rate == 100 and pace.yielded == pace.yielded_to_live == 1
        for _ in range(10):
            pace.observe(50, 0.5, live_waited=1)
        assert pace.rate == 200 / FLOOR_DIVISOR and pace.yielded_to_live == 11

    def test_the_rate_climbs_back_once_no_device_waits(self) -> None:
        pace = Pace(200)
        for _ in range(3):
            pace.observe(50, 0.1, live_waited=2)
        assert pace.rate == 25
        pace.observe(50, 0.1)
        assert pace.rate == 45
        for _ in range(20):
            pace.observe(50, 0.1)
        assert pace.rate == 200 and pace.yielded_to_live == 3

    async def test_the_yielded_rate_refills_the_bucket_more_slowly(self) -> None:
        # Only the test moves this clock: a loaded machine that paused this process for
        # 10 ms between the two takes gave the second its token from real time.
        clock = SteppedClock(base=lambda: 0.0)
        pace = Pace(200, clock=clock)
        await pace.take(200)  # the bucket's first second, at once
        pace.observe(50, 0.1, live_waited=1)
        clock.advance(0.25)  # a quarter of a second: 25 uplinks at 100/s, not 50
        taken = asyncio.create_task(pace.take(25))
        more = asyncio.create_task(pace.take(1))
        await asyncio.sleep(0)
        assert taken.done() and not more.done()
        clock.advance(0.01)  # one more uplink's worth at 100/s
        await asyncio.wait_for(more, 5)

    def test_a_fixed_pace_never_moves(self) -> None:
        pace = Pace(200, adaptive=False)
        pace.observe(50, 0.1)
        pace.observe(50, 5.0, live_waited=4)
        assert pace.rate == 200 and pace.yielded == 0
