"""FairTurns: round robin between versions while calls wait, nothing reserved while idle;
live calls before background ones, which never hold more turns than their cap."""

from __future__ import annotations

import asyncio

import pytest
from preservarium_sandbox.fair import FairTurns, leave_one_for_live


async def _hold(turns: FairTurns, key: str, order: list[str], gate: asyncio.Event) -> None:
    async with turns.turn(key):
        order.append(key)
        await gate.wait()


async def test_waiting_versions_take_turns_round_robin() -> None:
    turns, gate = FairTurns(1), asyncio.Event()
    order: list[str] = []
    first = asyncio.create_task(_hold(turns, "a", order, gate))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(_hold(turns, key, order, gate)) for key in "aaaab"]
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(first, *waiting)
    assert order == ["a", "a", "b", "a", "a", "a"]  # b's one call after a's next turn


async def test_one_version_alone_uses_every_turn() -> None:
    turns, gate = FairTurns(3), asyncio.Event()
    order: list[str] = []
    held = [asyncio.create_task(_hold(turns, "a", order, gate)) for _ in range(3)]
    await asyncio.sleep(0)
    assert order == ["a", "a", "a"]
    gate.set()
    await asyncio.gather(*held)


async def test_a_caller_that_leaves_while_waiting_or_as_it_is_served_loses_no_turn() -> None:
    turns, gate = FairTurns(1), asyncio.Event()
    order: list[str] = []
    first = asyncio.create_task(_hold(turns, "a", order, gate))
    await asyncio.sleep(0)
    leaving = asyncio.create_task(_hold(turns, "b", order, gate))
    served_as_it_leaves = asyncio.create_task(_hold(turns, "c", order, gate))
    last = asyncio.create_task(_hold(turns, "d", order, gate))
    await asyncio.sleep(0)
    leaving.cancel()
    gate.set()
    await asyncio.sleep(0)  # a's turn is released and handed to c...
    served_as_it_leaves.cancel()  # ...which leaves before it runs
    await asyncio.gather(first, last, leaving, served_as_it_leaves, return_exceptions=True)
    assert "d" in order and "b" not in order
    async with asyncio.timeout(1):  # every turn came back
        async with turns.turn("e"):
            pass


async def _hold_in(
    turns: FairTurns, key: str, order: list[str], gate: asyncio.Event, *, background: bool
) -> None:
    async with turns.turn(key, background=background):
        order.append(key)
        await gate.wait()


class TestLanes:
    """Background calls (replays) take the turns live calls leave."""

    async def test_a_live_call_is_served_before_a_background_call_that_waited_longer(
        self,
    ) -> None:
        turns, gate = FairTurns(1), asyncio.Event()
        order: list[str] = []
        first = asyncio.create_task(_hold_in(turns, "held", order, gate, background=False))
        await asyncio.sleep(0)
        replay = asyncio.create_task(_hold_in(turns, "replay", order, gate, background=True))
        await asyncio.sleep(0)
        live = asyncio.create_task(_hold_in(turns, "live", order, gate, background=False))
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(first, replay, live)
        assert order == ["held", "live", "replay"]

    async def test_background_calls_alone_use_every_turn_without_a_cap(self) -> None:
        turns, gate = FairTurns(3), asyncio.Event()
        order: list[str] = []
        held = [
            asyncio.create_task(_hold_in(turns, "r", order, gate, background=True))
            for _ in range(3)
        ]
        await asyncio.sleep(0)
        assert order == ["r", "r", "r"] and turns.background_held == 3
        gate.set()
        await asyncio.gather(*held)
        assert turns.background_held == 0

    async def test_a_background_cap_leaves_live_calls_a_turn(self) -> None:
        turns, gate = FairTurns(3, background_cap=leave_one_for_live(3)), asyncio.Event()
        order: list[str] = []
        replays = [
            asyncio.create_task(_hold_in(turns, "r", order, gate, background=True))
            for _ in range(4)
        ]
        await asyncio.sleep(0)
        assert order == ["r", "r"] and turns.background_held == 2
        live = asyncio.create_task(_hold_in(turns, "live", order, gate, background=False))
        await asyncio.sleep(0)
        assert order == ["r", "r", "live"]  # at once: no wait behind the replay
        gate.set()
        await asyncio.gather(*replays, live)
        assert order.count("r") == 4 and turns.background_held == 0

    async def test_a_turn_freed_under_the_cap_goes_to_a_waiting_background_call(
        self,
    ) -> None:
        turns = FairTurns(2, background_cap=1)
        order: list[str] = []
        first_gate, rest = asyncio.Event(), asyncio.Event()
        first = asyncio.create_task(_hold_in(turns, "r1", order, first_gate, background=True))
        await asyncio.sleep(0)
        second = asyncio.create_task(_hold_in(turns, "r2", order, rest, background=True))
        await asyncio.sleep(0)
        assert order == ["r1"]  # the cap: one background turn, the other left free
        first_gate.set()
        await first
        await asyncio.sleep(0)
        assert order == ["r1", "r2"]
        rest.set()
        await second

    async def test_a_background_caller_that_leaves_gives_its_turn_back(self) -> None:
        turns, gate = FairTurns(1), asyncio.Event()
        order: list[str] = []
        first = asyncio.create_task(_hold_in(turns, "a", order, gate, background=False))
        await asyncio.sleep(0)
        leaving = asyncio.create_task(_hold_in(turns, "r", order, gate, background=True))
        await asyncio.sleep(0)
        gate.set()
        await asyncio.sleep(0)  # a's turn is handed to r...
        leaving.cancel()  # ...which leaves before it runs
        await asyncio.gather(first, leaving, return_exceptions=True)
        assert turns.background_held == 0
        async with asyncio.timeout(1):
            async with turns.turn("again", background=True):
                assert turns.background_held == 1

    async def test_live_calls_that_wait_while_background_calls_hold_a_turn_are_counted(
        self,
    ) -> None:
        turns, gate = FairTurns(2, background_cap=1), asyncio.Event()
        order: list[str] = []
        replay = asyncio.create_task(_hold_in(turns, "r", order, gate, background=True))
        first = asyncio.create_task(_hold_in(turns, "a", order, gate, background=False))
        await asyncio.sleep(0)
        assert order == ["r", "a"] and turns.live_delayed == 0  # a found the free turn
        waiting = [
            asyncio.create_task(_hold_in(turns, key, order, gate, background=False))
            for key in ("b", "c")
        ]
        queued = asyncio.create_task(_hold_in(turns, "r2", order, gate, background=True))
        await asyncio.sleep(0)
        assert turns.live_delayed == 2  # b and c wait while r holds; r2 is no live call
        gate.set()
        await asyncio.gather(replay, first, *waiting, queued)
        assert turns.live_delayed == 2

    async def test_live_calls_waiting_behind_live_calls_alone_are_not_counted(self) -> None:
        turns, gate = FairTurns(1, background_cap=1), asyncio.Event()
        order: list[str] = []
        held = [
            asyncio.create_task(_hold_in(turns, key, order, gate, background=False))
            for key in ("a", "b", "c")
        ]
        await asyncio.sleep(0)
        assert order == ["a"] and turns.live_delayed == 0
        gate.set()
        await asyncio.gather(*held)
        assert turns.live_delayed == 0

    def test_background_calls_always_keep_a_turn(self) -> None:
        assert leave_one_for_live(1) == 1 and leave_one_for_live(4) == 3
        with pytest.raises(ValueError, match="at least one turn"):
            FairTurns(2, background_cap=0)
