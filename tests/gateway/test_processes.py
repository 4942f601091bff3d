"""The parent of several gateway processes keeps each one running and stops them all.

Real child processes stand in for gateways here (a Python that sleeps), so what is
tested is the supervision itself: a killed child is logged, counted and started again;
stop() ends every child. tests/gateway/test_processes_serving.py runs real gateways.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator

import pytest
from preservarium.supervisor import Backoff
from preservarium_gateway.process_metrics import ProcessMetrics
from preservarium_gateway.process_roles import ProcessRole
from preservarium_gateway.processes import GatewayProcesses, exit_text
from prometheus_client import CollectorRegistry

from tests.embedded.support import alive

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]
QUICK = Backoff(initial_s=0.01, max_s=0.05)


def sleeper(role: ProcessRole) -> list[str]:
    return SLEEPER


async def until(condition: object, what: str, timeout_s: float = 20.0) -> None:
    """Wait (without timing anything) until `condition()` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():  # type: ignore[operator]
        assert loop.time() < deadline, f"still not: {what}"
        await asyncio.sleep(0.02)


def exits(metrics: ProcessMetrics, index: int) -> float:
    value = metrics.registry.get_sample_value(
        "preservarium_gateway_process_exits_total", {"process": str(index)}
    )
    return value or 0.0


@pytest.fixture
async def group() -> AsyncIterator[tuple[GatewayProcesses, ProcessMetrics]]:
    metrics = ProcessMetrics(CollectorRegistry())
    processes = GatewayProcesses(
        roles=ProcessRole.plan([0, 0]), env=dict(os.environ), metrics=metrics,
        command=sleeper, backoff=QUICK, grace_s=5.0,
    )  # fmt: skip
    await processes.start()
    try:
        await until(lambda: len(processes.pids) == 2, "two children running")
        yield processes, metrics
    finally:
        await processes.stop()


class TestSupervision:
    async def test_a_killed_child_is_counted_and_started_again(
        self, group: tuple[GatewayProcesses, ProcessMetrics]
    ) -> None:
        processes, metrics = group
        before = processes.pids
        os.kill(before[1], signal.SIGKILL)
        await until(lambda: processes.pids.get(1, before[1]) != before[1], "a new child 1")
        assert exits(metrics, 1) == 1
        assert exits(metrics, 0) == 0
        assert processes.pids[0] == before[0]  # the other one was left alone
        assert not alive({before[1]})
        await until(
            lambda: metrics.registry.get_sample_value("preservarium_gateway_processes_running")
            == 2,
            "two running again",
        )

    async def test_stop_ends_every_child(
        self, group: tuple[GatewayProcesses, ProcessMetrics]
    ) -> None:
        processes, metrics = group
        pids = set(processes.pids.values())
        await processes.stop()
        assert not alive(pids)
        assert processes.pids == {}
        assert exits(metrics, 0) == exits(metrics, 1) == 0  # a stop is not an exit
        await processes.stop()  # idempotent


class TestRoles:
    def test_process_zero_takes_the_singletons(self) -> None:
        first, second = ProcessRole.plan([9001, 9002])
        base = {"PRESERVARIUM_API_LISTEN": "0.0.0.0:8080", "PRESERVARIUM_GATEWAY_PROCESSES": "2",
                "PRESERVARIUM_DB_AUTO_MIGRATE": "1", "OTHER": "kept"}  # fmt: skip
        one, two = first.environment(base), second.environment(base)
        assert one["PRESERVARIUM_API_LISTEN"] == "0.0.0.0:8080"
        assert "PRESERVARIUM_COAPS_BIND" not in one  # the default listener
        assert two["PRESERVARIUM_API_LISTEN"] == two["PRESERVARIUM_COAPS_BIND"] == ""
        for env, port in ((one, "9001"), (two, "9002")):
            assert env["PRESERVARIUM_GATEWAY_PROCESSES"] == "1"
            assert env["PRESERVARIUM_DB_AUTO_MIGRATE"] == "0"
            assert env["PRESERVARIUM_METRICS_PORT"] == port
            assert env["OTHER"] == "kept"

    @pytest.mark.parametrize(
        ("status", "text"),
        [(0, "status 0"), (3, "status 3"), (-9, "signal SIGKILL"), (None, "an unknown status")],
    )
    def test_exit_text(self, status: int | None, text: str) -> None:
        assert exit_text(status) == text
