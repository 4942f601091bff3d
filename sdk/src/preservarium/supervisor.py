"""Supervised background tasks: none of a service's long-lived loops may end silently.

Each loop (a Kafka consumer, a periodic sweep, a listener, a stream reader) runs under
a Supervisor. A loop that raises something unexpected is logged with its traceback,
counted (`preservarium_task_restarts_total{task=...}`), reported down (the service's
health probe says unhealthy) and started again after a capped, doubling delay; it is
reported up again as soon as it runs again. Cancellation is how owners stop their
loops: it is never a crash. A loop that returns has ended on purpose.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge

log = logging.getLogger("preservarium.supervisor")
T = TypeVar("T")

Loop = Callable[[], Awaitable[None]]
Pause = Callable[[float], Awaitable[None]]
RestartObserver = Callable[[str], None]
HealthObserver = Callable[[bool], None]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays between restarts: `initial_s`, doubling up to `max_s`; a task that ran for
    `reset_after_s` before it failed starts again from `initial_s`."""

    initial_s: float = 0.2
    max_s: float = 10.0
    reset_after_s: float = 30.0


class SupervisorMetrics:
    """The supervisor's metrics in a service's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.restarts = Counter(
            "preservarium_task_restarts",
            "Background tasks restarted after an unexpected failure, by task.",
            ["task"],
            registry=registry,
        )
        self.healthy = Gauge(
            "preservarium_tasks_healthy",
            "1 while every supervised background task runs, 0 while one is down.",
            registry=registry,
        )
        self.healthy.set(1)

    def restarted(self, task: str) -> None:
        """Count one restart of `task`."""
        self.restarts.labels(task).inc()


class Supervisor:
    """Runs named loops, restarting each one that fails; knows whether all of them run."""

    def __init__(
        self,
        *,
        backoff: Backoff | None = None,
        on_restart: RestartObserver | None = None,
        on_health: HealthObserver | None = None,
    ) -> None:
        self.backoff = backoff or Backoff()  # read at each restart: may be changed
        # How a failed loop waits out its delay; read at each restart. Tests replace it
        # to hold a loop down for exactly as long as they need to observe it down.
        self.pause: Pause = asyncio.sleep
        self._on_restart = on_restart or (lambda task: None)
        self._on_health = on_health or (lambda healthy: None)
        self._down: dict[object, str] = {}

    @property
    def healthy(self) -> bool:
        """True while no supervised loop is down."""
        return not self._down

    @property
    def down(self) -> list[str]:
        """The names of the loops that are down now."""
        return sorted(self._down.values())

    def spawn(self, name: str, loop: Loop) -> asyncio.Task[None]:
        """Run `loop()` as a task named `name`, and again each time it fails.

        Cancel the returned task to stop it (and its restarts).
        """
        return asyncio.create_task(self._keep(name, loop), name=name)

    async def _keep(self, name: str, loop: Loop) -> None:
        clock = asyncio.get_running_loop()
        token = object()  # several loops may share a name (one per stream, say)
        delay = self.backoff.initial_s
        try:
            while True:
                started = clock.time()
                try:
                    await loop()
                    return
                except Exception:
                    log.exception("background task failed; restarting", extra={"task": name})
                    self._mark(token, name, down=True)
                    self._notify(self._on_restart, name)
                if clock.time() - started >= self.backoff.reset_after_s:
                    delay = self.backoff.initial_s
                await self.pause(delay)
                delay = min(delay * 2, self.backoff.max_s)
                self._mark(token, name, down=False)
        finally:
            self._mark(token, name, down=False)

    def _mark(self, token: object, name: str, *, down: bool) -> None:
        was = self.healthy
        if down:
            self._down[token] = name
        else:
            self._down.pop(token, None)
        if self.healthy != was:
            self._notify(self._on_health, self.healthy)

    @staticmethod
    def _notify(observer: Callable[[T], None], value: T) -> None:
        # An observer's failure must not take the supervision down with it.
        try:
            observer(value)
        except Exception:
            log.exception("supervisor observer failed")
