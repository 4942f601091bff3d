"""Supervised loops: a failure is logged, counted, reported down, and the loop restarted;
cancellation is a stop, not a crash. Periodic jobs and ParseStream readers run supervised."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
from preservarium.errors import RepositoryError
from preservarium.parse_stream import ParseStream, StreamBrokenError
from preservarium.periodic import Periodic
from preservarium.sandbox.v1 import sandbox_pb2 as pb
from preservarium.supervisor import Backoff, Supervisor, SupervisorMetrics
from prometheus_client import CollectorRegistry

from tests.support.waiting import until

FAST = Backoff(initial_s=0.3, max_s=1.0)


class Watch:
    """A supervisor with its observations recorded."""

    def __init__(self) -> None:
        self.restarts: list[str] = []
        self.health: list[bool] = []
        self.supervisor = Supervisor(
            backoff=FAST, on_restart=self.restarts.append, on_health=self.health.append
        )


async def test_a_failing_loop_is_counted_reported_down_and_restarted() -> None:
    watch = Watch()
    runs: list[int] = []

    async def loop() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise RuntimeError("injected")
        await asyncio.Event().wait()

    task = watch.supervisor.spawn("worker", loop)
    await until(lambda: watch.restarts == ["worker"])
    assert not watch.supervisor.healthy and watch.supervisor.down == ["worker"]
    await until(lambda: len(runs) == 2)
    assert watch.supervisor.healthy and watch.health == [False, True]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert watch.restarts == ["worker"] and watch.health == [False, True]


async def test_cancelling_a_loop_while_it_waits_to_restart_leaves_the_service_healthy() -> None:
    watch = Watch()

    async def loop() -> None:
        raise RuntimeError("always")

    task = watch.supervisor.spawn("doomed", loop)
    await until(lambda: not watch.supervisor.healthy)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert watch.supervisor.healthy


async def test_the_delay_doubles_up_to_its_cap() -> None:
    watch = Watch()
    watch.supervisor.backoff = Backoff(initial_s=0.05, max_s=0.1)
    starts: list[float] = []
    clock = asyncio.get_running_loop()

    async def loop() -> None:
        starts.append(clock.time())
        raise RuntimeError("again")

    task = watch.supervisor.spawn("flaky", loop)
    await until(lambda: len(starts) >= 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps[0] >= 0.05 and all(gap >= 0.1 for gap in gaps[1:4])
    assert all(gap < 1.0 for gap in gaps)


def test_restarts_are_a_prometheus_counter_by_task() -> None:
    registry = CollectorRegistry()
    metrics = SupervisorMetrics(registry)
    metrics.restarted("command-consumer")
    value = registry.get_sample_value(
        "preservarium_task_restarts_total", {"task": "command-consumer"}
    )
    assert value == 1.0
    assert registry.get_sample_value("preservarium_tasks_healthy") == 1.0


async def test_a_periodic_job_that_raises_a_bug_is_restarted() -> None:
    watch = Watch()
    runs: list[str] = []

    async def job() -> None:
        runs.append("run")
        if len(runs) == 1:
            raise KeyError("a bug, not one of our errors")
        if len(runs) == 2:
            raise RepositoryError("one of ours: logged, the loop goes on")

    periodic = Periodic(job, interval_s=0.02, name="sweep", supervisor=watch.supervisor)
    periodic.start()
    try:
        await until(lambda: len(runs) >= 4)
    finally:
        await periodic.stop()
    assert watch.restarts == ["sweep"]
    assert watch.health == [False, True]


class BrokenCall:
    """A ParseStream call whose reading fails with something gRPC never raises."""

    def __init__(self) -> None:
        self.cancelled = False
        self.written: list[Any] = []

    async def write(self, message: Any) -> None:
        self.written.append(message)

    def cancel(self) -> None:
        self.cancelled = True

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._items()

    async def _items(self) -> AsyncIterator[Any]:
        await asyncio.sleep(0.05)
        raise RuntimeError("injected reader failure")
        yield  # pragma: no cover


class Stub:
    def __init__(self) -> None:
        self.call = BrokenCall()

    def ParseStream(self) -> BrokenCall:  # the generated stub's name
        return self.call


async def test_a_failing_stream_reader_breaks_its_stream_and_is_counted() -> None:
    watch = Watch()
    stub = Stub()
    stream = ParseStream(stub, supervisor=watch.supervisor)
    try:
        with pytest.raises(StreamBrokenError):
            await stream.request(pb.ParseRequest(contact=pb.Contact(device_type="t")), timeout_s=5)
        assert stream.broken is not None and stub.call.cancelled
        await until(lambda: watch.restarts == ["parse-stream-reader"])
        await until(lambda: watch.health == [False, True])
        with pytest.raises(StreamBrokenError):  # the client opens a new stream instead
            await stream.request(pb.ParseRequest(contact=pb.Contact(device_type="t")), timeout_s=5)
    finally:
        await stream.close()
    assert watch.supervisor.healthy
