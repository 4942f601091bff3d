"""The runtime's costs as metrics (collector pauses, event-loop lag), and `settle`, which
keeps a started service's objects out of the collector's full passes."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from preservarium.runtime import LAG_SAMPLE_INTERVAL_S, RuntimeMetrics, settle
from preservarium.supervisor import Supervisor
from prometheus_client import CollectorRegistry

from tests.support.waiting import until


@pytest.fixture
async def watched() -> AsyncIterator[tuple[RuntimeMetrics, CollectorRegistry]]:
    registry = CollectorRegistry()
    metrics = RuntimeMetrics(registry)
    metrics.start(Supervisor())
    try:
        yield metrics, registry
    finally:
        await metrics.stop()


@pytest.fixture
def thawed() -> Iterator[None]:
    """Whatever a test freezes is unfrozen after it: the test process goes on."""
    try:
        yield
    finally:
        gc.unfreeze()


def count(registry: CollectorRegistry, name: str, labels: dict[str, str] | None = None) -> float:
    return registry.get_sample_value(name, labels or {}) or 0.0


async def test_each_collection_is_timed_by_its_generation(
    watched: tuple[RuntimeMetrics, CollectorRegistry],
) -> None:
    _, registry = watched
    full = "preservarium_gc_pause_seconds_count", {"generation": "2"}
    young = "preservarium_gc_pause_seconds_count", {"generation": "0"}
    before = count(registry, *full), count(registry, *young)
    gc.collect()
    gc.collect(0)
    assert count(registry, *full) >= before[0] + 1
    assert count(registry, *young) >= before[1] + 1
    assert count(registry, "preservarium_gc_pause_seconds_sum", {"generation": "2"}) > 0


async def test_a_blocked_loop_shows_as_lag(
    watched: tuple[RuntimeMetrics, CollectorRegistry],
) -> None:
    _, registry = watched
    await asyncio.sleep(LAG_SAMPLE_INTERVAL_S * 2)  # the sampler is waiting now: it wakes
    # at least 0.4 s late, wherever in its 0.1 s sleep the block starts
    time.sleep(0.5)  # noqa: ASYNC251 - the point: a call that blocks the loop
    late = "preservarium_event_loop_lag_seconds_bucket", {"le": "0.25"}
    total = "preservarium_event_loop_lag_seconds_count"
    await until(lambda: count(registry, total) > count(registry, *late))


async def test_stopped_metrics_time_nothing_more() -> None:
    registry = CollectorRegistry()
    metrics = RuntimeMetrics(registry)
    metrics.start(Supervisor())
    await metrics.stop()
    await metrics.stop()  # idempotent
    name, labels = "preservarium_gc_pause_seconds_count", {"generation": "2"}
    before = count(registry, name, labels)
    gc.collect()
    assert count(registry, name, labels) == before
    assert metrics._on_gc not in gc.callbacks


def test_settle_freezes_what_is_alive_and_the_collector_no_longer_walks_it(
    thawed: None,
) -> None:
    held = [[n] for n in range(1_000)]  # containers the collector would walk

    def walked() -> bool:
        """Whether the collector's generations (what its passes walk) hold `held`."""
        return any(obj is held for obj in gc.get_objects())

    assert walked()
    frozen = settle()
    assert frozen >= len(held) and gc.get_freeze_count() == frozen
    assert not walked()
    registry = CollectorRegistry()
    RuntimeMetrics(registry)
    assert count(registry, "preservarium_gc_frozen_objects") == frozen
    gc.unfreeze()
    assert walked()
