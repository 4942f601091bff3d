"""Batches on real worker processes: jobs of one version that wait together share a frame,
each keeps its own answer and deadline, and none is lost when its worker is."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest
from preservarium_sandbox.limits import Limits
from preservarium_sandbox.outcome import read_answer
from preservarium_sandbox.pool import Job, WorkerPool
from preservarium_sandbox.worker.protocol import Answer
from preservarium_sandbox.worker_process import CallResult, JobTimedOut, WorkerDied

from tests.sandbox.support import kill

CONTACT: dict[str, Any] = {"device_id": None, "device_type": "t", "path": "", "method": "POST",
           "confirmable": True, "received_at": 0, "query": {}}  # fmt: skip
ECHO = "def parse(payload, metadata):\n    return {'p': payload.hex()}\n"
# Runs away on the payload b"loop", swallowing its deadline: only a kill ends it.
RUNAWAY = (
    "def parse(payload, metadata):\n"
    "    while payload == b'loop':\n"
    "        try:\n"
    "            while True:\n"
    "                pass\n"
    "        except:\n"
    "            pass\n"
    "    return {'p': payload.hex()}\n"
)
# Spins until killed on b"spin" (the deadline is far away).
SPIN = "def parse(payload, metadata):\n    while payload == b'spin':\n        pass\n" + (
    "    return {'p': payload.hex()}\n"
)


class Sizes(list[int]):
    """The batch sizes the pool reports."""

    def __call__(self, size: int) -> None:
        self.append(size)


@pytest.fixture
def sizes() -> Sizes:
    return Sizes()


@pytest.fixture
async def pool(sizes: Sizes) -> AsyncIterator[WorkerPool]:
    async with WorkerPool(
        size=1, limits=Limits(timeout_ms=200), spares=1, on_batch=sizes
    ) as started:
        yield started


def job(source: str, payload: bytes, version: str) -> Job:
    return Job(sha=version * 64, source=source, contact=CONTACT, payload=payload)


def data(answer: CallResult) -> Any:
    outcome = read_answer(answer, limits=Limits(), has_contact=True)
    if outcome.failure is not None:
        return outcome.failure.kind.value
    assert outcome.data_json is not None
    return outcome.data_json.decode()


async def busy(pool: WorkerPool, spares: int = 1) -> asyncio.Task[CallResult]:
    """Occupy the pool's one worker for a while (a job of its own version)."""
    slow = (
        "def parse(payload, metadata):\n    for i in range(100000):\n        pass\n    return {}\n"
    )
    task = asyncio.create_task(pool.run(job(slow, b"", "0")))
    while pool.idle > spares:  # noqa: ASYNC110 - its worker taken: only the spare is idle
        await asyncio.sleep(0.001)
    return task


async def test_a_lone_job_goes_alone(pool: WorkerPool, sizes: Sizes) -> None:
    answer = await pool.run(job(ECHO, b"\x01", "a"))
    assert data(answer) == '{"p":"01"}'
    assert sizes == [1]


async def test_jobs_waiting_together_share_one_frame_per_version(
    pool: WorkerPool, sizes: Sizes
) -> None:
    occupied = await busy(pool)
    calls = [pool.run(job(ECHO, bytes([n]), "ab"[n % 2])) for n in range(10)]
    answers = await asyncio.gather(*calls)
    assert [data(a) for a in answers] == [f'{{"p":"{n:02x}"}}' for n in range(10)]
    await occupied
    # The busy job alone, then one frame for each version: never one mixing them.
    assert sizes == [1, 5, 5]


async def test_live_and_background_jobs_never_share_a_frame(sizes: Sizes) -> None:
    # A replay's jobs (background) of the same version as a device's, queued earlier:
    # the device's go first, in a frame of their own, and the replay's after them.
    # Only if both wait when the worker frees up: one that answered before the device's
    # jobs were queued rightly hands its turn to the replay, the only one waiting then
    # (under load the busy job's answer can be read, and its turn handed on, before
    # `occupied` is done). So the workers are stopped (SIGSTOP) from before the busy job
    # is sent until both lanes wait, under a deadline the stop cannot reach.
    async with WorkerPool(size=1, limits=Limits(timeout_ms=5000), spares=1, on_batch=sizes) as pool:
        held = pool.pids
        for pid in held:
            kill(pid, signal.SIGSTOP)
        try:
            occupied = await busy(pool)  # sent, but its worker cannot answer yet
            replayed = [
                asyncio.create_task(
                    pool.run(dataclasses.replace(job(ECHO, bytes([n]), "a"), background=True))
                )
                for n in range(4)
            ]
            await asyncio.sleep(0.1)  # queued, and waiting for a turn, before the live ones
            live = [
                asyncio.create_task(pool.run(job(ECHO, bytes([10 + n]), "a"))) for n in range(3)
            ]
            await asyncio.sleep(0.1)  # the live ones wait too
            assert not occupied.done() and sizes == [1]
        finally:
            for pid in held:
                kill(pid, signal.SIGCONT)
        answers = await asyncio.gather(*live, *replayed)
        await occupied
    assert [data(a) for a in answers] == [f'{{"p":"{n:02x}"}}' for n in (10, 11, 12, 0, 1, 2, 3)]
    # The device's jobs share a frame; the replay's go one to a frame, so a device's
    # contact arriving meanwhile waits for one replayed call at most.
    assert sizes == [1, 3, 1, 1, 1, 1]


async def test_a_replays_jobs_go_one_to_a_frame_while_a_devices_share_one(sizes: Sizes) -> None:
    async with WorkerPool(size=1, limits=Limits(timeout_ms=5000), spares=1, on_batch=sizes) as pool:
        occupied = await busy(pool)
        replayed = [
            pool.run(dataclasses.replace(job(ECHO, bytes([n]), "a"), background=True))
            for n in range(5)
        ]
        answers = await asyncio.gather(*replayed)
        await occupied
        assert [data(a) for a in answers] == [f'{{"p":"{n:02x}"}}' for n in range(5)]
        assert sizes == [1, 1, 1, 1, 1, 1]
        sizes.clear()
        occupied = await busy(pool)
        live = await asyncio.gather(*(pool.run(job(ECHO, bytes([n]), "a")) for n in range(5)))
        await occupied
        assert [data(a) for a in live] == [f'{{"p":"{n:02x}"}}' for n in range(5)]
        assert sizes == [1, 5]


async def test_a_runaway_fails_alone_and_the_rest_of_its_batch_is_answered(
    pool: WorkerPool, sizes: Sizes
) -> None:
    occupied = await busy(pool)
    payloads = [b"\x00", b"\x01", b"loop", b"\x03", b"\x04"]
    answers = await asyncio.gather(*(pool.run(job(RUNAWAY, p, "r")) for p in payloads))
    await occupied
    assert [data(a) for a in answers] == [
        '{"p":"00"}',
        '{"p":"01"}',
        "timeout",
        '{"p":"03"}',
        '{"p":"04"}',
    ]
    # Only the runaway is charged with its worker (the pool says it timed out, in its
    # own type); the two after it ran again elsewhere.
    assert [type(a) for a in answers] == [Answer, Answer, JobTimedOut, Answer, Answer]
    assert answers[2] == JobTimedOut(200)
    replaced = [read_answer(a, limits=Limits(), has_contact=True).worker_replaced for a in answers]
    assert replaced == [False, False, True, False, False]
    assert sizes == [1, 5, 2]


async def test_a_worker_killed_mid_batch_loses_no_job(sizes: Sizes) -> None:
    async with WorkerPool(size=1, limits=Limits(timeout_ms=5000), spares=0, on_batch=sizes) as pool:
        (victim,) = pool.pids
        occupied = await busy(pool, spares=0)
        payloads = [b"\x00", b"spin", b"\x02", b"\x03"]
        calls = [asyncio.ensure_future(pool.run(job(SPIN, p, "k"))) for p in payloads]
        await occupied
        first = await calls[0]  # the worker now spins on the second job
        kill(victim, signal.SIGKILL)
        answers = [first, *await asyncio.gather(*calls[1:])]
    assert [data(a) for a in answers] == ['{"p":"00"}', "runtime_error", '{"p":"02"}', '{"p":"03"}']
    assert isinstance(answers[1], WorkerDied)
    assert answers[1].message == "the sandbox worker died (SIGKILL) running the parser"
    assert read_answer(answers[1], limits=Limits(), has_contact=True).worker_died
    assert sizes == [1, 4, 2]


async def test_a_burst_on_an_idle_pool_is_shared_between_its_workers(sizes: Sizes) -> None:
    async with WorkerPool(size=2, limits=Limits(timeout_ms=2000), spares=0, on_batch=sizes) as pool:
        answers = await asyncio.gather(*(pool.run(job(ECHO, bytes([n]), "s")) for n in range(4)))
    assert [data(a) for a in answers] == [f'{{"p":"{n:02x}"}}' for n in range(4)]
    assert sizes == [2, 2]  # not all four on one worker while the other idles
