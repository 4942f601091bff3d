"""The worker pool keeps every worker whatever goes wrong in the middle of a call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from preservarium_sandbox import worker_process
from preservarium_sandbox.limits import Limits
from preservarium_sandbox.outcome import read_answer
from preservarium_sandbox.pool import Job, WorkerPool
from preservarium_sandbox.worker.protocol import Answer, ProtocolError
from preservarium_sandbox.worker_process import JobTimedOut, WorkerProcess

LIMITS = Limits(timeout_ms=200)
SIZE, SPARES = 1, 1
SOURCE = "def parse(payload, metadata):\n    return {'n': len(payload)}\n"
CONTACT: dict[str, Any] = {"device_id": None, "device_type": "t", "path": "", "method": "POST",
           "confirmable": True, "received_at": 0, "query": {}}  # fmt: skip


class Injected(Exception):
    """An exception nobody foresaw."""


def _errors() -> list[BaseException]:
    return [
        Injected("boom"),
        UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
        ValueError("Out of range float values are not JSON compliant"),
    ]


def _raising(error: BaseException) -> Any:
    def step(*args: object, **kwargs: object) -> Any:
        raise error

    return step


# Each step of the hand-off, as (object, attribute) to replace with one that raises.
STEPS: list[tuple[object, str]] = [
    (Job, "item"),
    (WorkerPool, "_next_answer"),
    (WorkerProcess, "next_answer"),
    (worker_process, "read_worker_frame"),
    (WorkerPool, "_worn_out"),
    (worker_process, "death_reason"),
]


@pytest.fixture
async def pool() -> AsyncIterator[WorkerPool]:
    async with WorkerPool(size=SIZE, limits=LIMITS, spares=SPARES) as started:
        yield started


def job(sha: str = "a" * 64, payload: bytes = b"xy") -> Job:
    return Job(sha=sha, source=SOURCE, contact=CONTACT, payload=payload)


async def assert_whole_and_answering(pool: WorkerPool) -> None:
    """Every worker is back (or replaced) and a benign call answers within its deadline."""
    async with asyncio.timeout(10):
        while pool.idle < SIZE + SPARES:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    started = time.perf_counter()
    answer = await pool.run(job(sha="b" * 64))
    assert isinstance(answer, Answer) and answer.ok
    assert time.perf_counter() - started < LIMITS.deadline_s(compiling=True)


async def test_an_exception_at_any_step_of_a_call_loses_no_worker(pool: WorkerPool) -> None:
    for target, name in STEPS:
        for error in _errors():
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(target, name, _raising(error))
                # The died path (where death_reason runs) needs a broken frame first.
                if name == "death_reason":
                    patch.setattr(worker_process, "read_worker_frame", _raising(ProtocolError()))
                with pytest.raises(Exception):  # noqa: B017 - any failure, but no hang
                    async with asyncio.timeout(5):
                        answer = await pool.run(job(sha=f"{name}{error!r}"[:64]))
                        raise AssertionError(answer)  # a step that raised still answered
            await assert_whole_and_answering(pool)


async def test_an_admit_check_or_observer_that_raises_loses_no_worker() -> None:
    def observer(reason: str) -> None:
        raise Injected(reason)

    async with WorkerPool(size=SIZE, limits=LIMITS, spares=SPARES, on_restart=observer) as pool:
        for error in _errors():
            with pytest.raises(type(error)):
                await pool.run(job(), _raising(error))
            await assert_whole_and_answering(pool)
        loop = (
            "def parse(payload, metadata):\n    while True:\n        try:\n"
            "            while True:\n                pass\n        except:\n            pass\n"
        )  # swallows its deadline: the parent kills and replaces the worker
        answer = await pool.run(Job(sha="c" * 64, source=loop, contact=CONTACT))
        # A timeout: its worker replaced, the observer raised.
        assert answer == JobTimedOut(LIMITS.timeout_ms)
        await assert_whole_and_answering(pool)


async def test_a_cancelled_call_loses_no_worker(pool: WorkerPool) -> None:
    loop = "def parse(payload, metadata):\n    while True:\n        pass\n"
    task = asyncio.create_task(pool.run(Job(sha="d" * 64, source=loop, contact=CONTACT)))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await assert_whole_and_answering(pool)


async def test_the_largest_legal_answer_comes_back(pool: WorkerPool) -> None:
    # The whole document, and every warning at its longest, of control characters (which
    # JSON escapes to six bytes each): before, the parent took this for a broken frame.
    source = (
        "def parse(payload, metadata):\n"
        f"    for i in range({LIMITS.max_warnings}):\n"
        f"        warn(chr(1) * {LIMITS.max_warning_chars})\n"
        f"    return {{'s': 'a' * {LIMITS.max_output_bytes - 16}}}\n"
    )
    answer = await pool.run(Job(sha="e" * 64, source=source, contact=CONTACT))
    outcome = read_answer(answer, limits=LIMITS, has_contact=True)
    assert outcome.failure is None, outcome.failure
    assert outcome.data_json is not None and len(outcome.data_json) > LIMITS.max_output_bytes - 20
    assert outcome.warnings == ("\x01" * LIMITS.max_warning_chars,) * LIMITS.max_warnings
    assert isinstance(answer, Answer) and not answer.recycle and not outcome.worker_replaced
