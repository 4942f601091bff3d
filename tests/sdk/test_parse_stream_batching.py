"""ParseStream's group-commit rule, on an in-memory call: at most two messages out,
contacts arriving meanwhile go together, and a slot comes back at a message's first
answer or once all its requests were given up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from preservarium.parse_stream import (
    MAX_BATCH_BYTES,
    MAX_BATCH_ITEMS,
    MESSAGES_IN_FLIGHT,
    ParseStream,
)
from preservarium.sandbox.v1 import sandbox_pb2 as pb


class MemoryCall:
    """A ParseStream call whose answers the test sends."""

    def __init__(self) -> None:
        self.written: list[pb.ParseStreamRequest] = []
        self._answers: asyncio.Queue[pb.ParseStreamResponse] = asyncio.Queue()

    async def write(self, message: pb.ParseStreamRequest) -> None:
        self.written.append(message)

    def cancel(self) -> None:
        pass

    def answer(self, number: int) -> None:
        self._answers.put_nowait(pb.ParseStreamResponse(id=number))

    def __aiter__(self) -> AsyncIterator[pb.ParseStreamResponse]:
        return self._items()

    async def _items(self) -> AsyncIterator[pb.ParseStreamResponse]:
        while True:
            yield await self._answers.get()

    def sizes(self) -> list[int]:
        return [len(message.items) for message in self.written]

    def ids(self, message: int) -> list[int]:
        return [item.id for item in self.written[message].items]


class Stub:
    def __init__(self) -> None:
        self.call = MemoryCall()

    def ParseStream(self) -> MemoryCall:  # the generated stub's name
        return self.call


@pytest.fixture
async def stream() -> AsyncIterator[tuple[ParseStream, MemoryCall]]:
    stub = Stub()
    opened = ParseStream(stub)
    yield opened, stub.call
    await opened.close()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def send(stream: ParseStream, timeout_s: float = 5) -> asyncio.Task[Any]:
    return asyncio.create_task(
        stream.request(pb.ParseRequest(contact=pb.Contact(device_type="t")), timeout_s)
    )


async def fill_slots(stream: ParseStream, timeout_s: float = 5) -> list[asyncio.Task[Any]]:
    """One lone request per slot, each sent before the next arrives."""
    tasks = []
    for _ in range(MESSAGES_IN_FLIGHT):
        tasks.append(send(stream, timeout_s))
        await settle()
    return tasks


async def test_a_lone_request_goes_at_once_and_alone(
    stream: tuple[ParseStream, MemoryCall],
) -> None:
    opened, call = stream
    for number in (1, 2, 3):
        task = send(opened)
        await settle()
        assert call.sizes()[-1] == 1
        call.answer(number)
        await task
    assert call.sizes() == [1, 1, 1]


async def test_requests_arriving_while_both_slots_are_out_go_together(
    stream: tuple[ParseStream, MemoryCall],
) -> None:
    opened, call = stream
    first = await fill_slots(opened)  # each finds a slot free: alone
    waiting = [send(opened) for _ in range(5)]
    await settle()
    assert call.sizes() == [1] * MESSAGES_IN_FLIGHT  # both slots out: the five wait
    call.answer(1)  # a slot comes back: the five go as one message
    await settle()
    assert call.sizes() == [1] * MESSAGES_IN_FLIGHT + [5]
    for number in [*call.ids(MESSAGES_IN_FLIGHT), 2]:
        call.answer(number)
    await asyncio.gather(*first, *waiting)


async def test_a_message_whose_requests_all_gave_up_frees_its_slot(
    stream: tuple[ParseStream, MemoryCall],
) -> None:
    opened, call = stream
    stuck = await fill_slots(opened, timeout_s=0.05)
    later = send(opened)
    await settle()
    assert call.sizes() == [1] * MESSAGES_IN_FLIGHT
    for task in stuck:
        with pytest.raises(TimeoutError):
            await task  # never answered: their deadline, not the batch's
    await settle()
    assert call.sizes() == [1] * MESSAGES_IN_FLIGHT + [1]
    call.answer(call.ids(MESSAGES_IN_FLIGHT)[0])
    await later


async def test_a_message_carries_at_most_its_cap(stream: tuple[ParseStream, MemoryCall]) -> None:
    opened, call = stream
    first = await fill_slots(opened)
    many = [send(opened) for _ in range(MAX_BATCH_ITEMS + 3)]
    await settle()
    call.answer(1)
    call.answer(2)
    await settle()
    assert call.sizes() == [1] * MESSAGES_IN_FLIGHT + [MAX_BATCH_ITEMS, 3]
    for message in range(len(call.written)):
        for number in call.ids(message):
            call.answer(number)
    await asyncio.gather(*first, *many)


async def test_a_message_stays_under_its_byte_cap(stream: tuple[ParseStream, MemoryCall]) -> None:
    opened, call = stream
    big = pb.ParseRequest(contact=pb.Contact(device_type="t", payload=bytes(60 * 1024)))
    many = [asyncio.create_task(opened.request(big, 5)) for _ in range(20)]
    answered: set[int] = set()
    while not all(task.done() for task in many):
        await settle()
        for message in range(len(call.written)):
            for number in set(call.ids(message)) - answered:
                answered.add(number)
                call.answer(number)
    await asyncio.gather(*many)
    assert sum(call.sizes()) == 20 and max(call.sizes()) > 1, call.sizes()
    assert all(message.ByteSize() <= MAX_BATCH_BYTES for message in call.written)
