"""FairTurns: round robin between versions while calls wait, nothing reserved while idle."""

from __future__ import annotations

import asyncio

from preservarium_sandbox.fair import FairTurns


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
