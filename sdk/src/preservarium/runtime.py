"""What the Python runtime costs a service's latency, and keeping that cost down.

A full pass of CPython's cyclic garbage collector walks every container object the
process holds and stops everything while it does. A gateway holds about 130,000 of them
right after it starts (the modules of aiocoap, gRPC, SQLAlchemy, FastAPI and their
caches): one full pass over those took 72 ms on the bench machine, and under load the
passes during live traffic took 100 to 170 ms, which set the p99 of every contact in
flight. `settle()` moves what the service holds once it has started out of the
collector's reach: start-up objects live as long as the process, so nothing is lost, and
a full pass then walks only what the service made since.

`RuntimeMetrics` shows both costs to an operator: each collection's pause, by
generation, and how late the event loop wakes a task that asked to sleep (its lag: what
every contact waits on top of its own work).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram

from preservarium.supervisor import Supervisor

# How often the loop's lag is sampled: often enough to catch a stall of a contact's
# length, seldom enough to cost nothing (ten wake-ups a second).
LAG_SAMPLE_INTERVAL_S = 0.1
PAUSE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
GENERATIONS = 3


def settle() -> int:
    """Collect once, then freeze every object left (`gc.freeze`): later full passes skip
    them. Call once a service has started; returns the objects frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class RuntimeMetrics:
    """Garbage-collection pauses and event-loop lag, in a service's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.gc_pause = Histogram(
            "preservarium_gc_pause_seconds",
            "Pauses of the cyclic garbage collector, by generation (2 is a full pass); "
            "every thread of the process waits for them.",
            ["generation"], buckets=PAUSE_BUCKETS, registry=registry,
        )  # fmt: skip
        self.loop_lag = Histogram(
            "preservarium_event_loop_lag_seconds",
            "How late the event loop woke a task sampling it every 0.1 s: what any "
            "request waits beyond its own work.",
            buckets=PAUSE_BUCKETS, registry=registry,
        )  # fmt: skip
        self.frozen = Gauge(
            "preservarium_gc_frozen_objects",
            "Objects kept out of the garbage collector's passes since the service "
            "started (its modules and start-up state).",
            registry=registry,
        )
        self.frozen.set_function(gc.get_freeze_count)
        self._pauses = [self.gc_pause.labels(str(n)) for n in range(GENERATIONS)]
        self._started: float | None = None
        self._lag: asyncio.Task[None] | None = None

    def start(self, supervisor: Supervisor) -> None:
        """Time every collection from now on, and sample the running loop's lag."""
        gc.callbacks.append(self._on_gc)
        self._lag = supervisor.spawn("event-loop-lag", self._sample_lag)

    async def stop(self) -> None:
        """Stop timing and sampling; idempotent."""
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._on_gc)
        lag, self._lag = self._lag, None
        if lag is not None:
            lag.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lag

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        # Collections do not nest (CPython runs none while one runs, callbacks included).
        if phase == "start":
            self._started = time.perf_counter()
            return
        started, self._started = self._started, None
        if started is not None:
            self._pauses[info["generation"]].observe(time.perf_counter() - started)

    async def _sample_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(LAG_SAMPLE_INTERVAL_S)
            self.loop_lag.observe(max(0.0, loop.time() - asked - LAG_SAMPLE_INTERVAL_S))
