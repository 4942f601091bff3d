"""Several gateway processes on one host: started, watched, restarted, stopped together.

The parent runs no contacts itself. It starts one child per `ProcessRole`; a child that
ends while it should serve is logged with its exit status, counted and started again
after a doubling backoff (the project's Supervisor: a child that ran for a while starts
again quickly). SIGTERM or SIGINT to the parent stops every child the polite way
(SIGTERM, their drain, SIGKILL after a grace period). Each child also dies with its
parent however the parent ends (PR_SET_PDEATHSIG, as `preservarium up` arranges for its
services), so a killed parent leaves no gateway holding the port.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from functools import partial

from preservarium.children import ChildProcess, LineSink
from preservarium.lifecycle import AsyncLifecycle
from preservarium.supervisor import Backoff, Supervisor

from preservarium_gateway.errors import GatewayError
from preservarium_gateway.process_metrics import ProcessMetrics
from preservarium_gateway.process_roles import ProcessRole

log = logging.getLogger("preservarium.gateway.processes")
# A child drains its contacts for up to GatewayLimits.drain_timeout_s (5 s) on SIGTERM.
STOP_GRACE_S = 10.0

Command = Callable[[ProcessRole], Sequence[str]]


class GatewayProcessExitedError(GatewayError):
    """A gateway process ended while it should have been serving; it is started again."""


def child_command(role: ProcessRole) -> list[str]:
    """The command line of one gateway child: this interpreter, the gateway module."""
    return [sys.executable, "-m", "preservarium_gateway", "--process-index", str(role.index)]


def exit_text(status: int | None) -> str:
    """An exit status as a person reads it: `status 3`, `signal SIGKILL`."""
    if status is None:
        return "an unknown status"
    if status < 0:
        try:
            return f"signal {signal.Signals(-status).name}"
        except ValueError:
            return f"signal {-status}"
    return f"status {status}"


def write_line(name: str, line: str) -> None:
    """Pass a child's log line on as it is: the children already log JSON with their index."""
    print(line, file=sys.stderr, flush=True)


class GatewayProcesses(AsyncLifecycle):
    """Keeps one child process per role running until stopped."""

    def __init__(
        self,
        *,
        roles: Sequence[ProcessRole],
        env: Mapping[str, str],
        metrics: ProcessMetrics,
        command: Command = child_command,
        sink: LineSink = write_line,
        backoff: Backoff | None = None,
        grace_s: float = STOP_GRACE_S,
    ) -> None:
        self._roles = list(roles)
        self._env = dict(env)
        self._metrics = metrics
        self._command = command
        self._sink = sink
        self._grace_s = grace_s
        self.supervisor = Supervisor(backoff=backoff, on_restart=self._restarting)
        self._children: dict[int, ChildProcess] = {}
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def pids(self) -> dict[int, int]:
        """The pid of each running child, by process index."""
        return {index: child.pid for index, child in self._children.items()
                if child.pid is not None}  # fmt: skip

    async def start(self) -> None:
        """Start every child (each under the supervisor, which restarts it)."""
        self._tasks = [
            self.supervisor.spawn(f"gateway-process-{role.index}", partial(self._run, role))
            for role in self._roles
        ]

    async def _run(self, role: ProcessRole) -> None:
        child = ChildProcess(
            name=f"gateway-{role.index}", argv=self._command(role),
            env=role.environment(self._env), sink=self._sink, grace_s=self._grace_s,
        )  # fmt: skip
        try:
            await child.start()
            self._children[role.index] = child
            self._metrics.running.inc()
            try:
                status = await child.wait()
            finally:
                self._metrics.running.dec()
                self._children.pop(role.index, None)
        finally:
            await child.stop()  # on cancellation too: the group goes with it
        log.warning("gateway process exited", extra={"index": role.index, "pid": child.pid,
                    "status": status, "exit": exit_text(status)})  # fmt: skip
        raise GatewayProcessExitedError(
            f"gateway process {role.index} (pid {child.pid}) exited with {exit_text(status)}"
        )

    def _restarting(self, task: str) -> None:
        self._metrics.exited(int(task.rsplit("-", 1)[1]))

    async def stop(self) -> None:
        """Stop every child (SIGTERM, then SIGKILL after the grace period); idempotent."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
