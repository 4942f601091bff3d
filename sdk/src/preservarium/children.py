"""Child processes (the embedded stack's services, the gateway's processes): each in its own
process group, its output read line by line.

A child is stopped the way codejail stops its jails: SIGTERM to the whole group, SIGKILL
to the group after a grace period, then SIGKILL once more to sweep up anything the child
left behind in its group.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from preservarium.parent_death import dying_with_parent

LineSink = Callable[[str, str], None]
"""Receives (child name, one line of its output)."""

TAIL_LINES = 20
LINE_LIMIT = 1 << 20
DRAIN_TIMEOUT_S = 2.0


class Child(Protocol):
    """A process the stack starts, watches and stops."""

    @property
    def name(self) -> str:
        """The name its log lines are prefixed with."""

    @property
    def pid(self) -> int | None:
        """Its process id once started."""

    @property
    def last_lines(self) -> list[str]:
        """The last lines it printed, oldest first."""

    async def start(self) -> None:
        """Start the process (readiness is the stack's business)."""

    async def wait(self) -> int | None:
        """Return once the process has exited: its status when known."""

    async def stop(self) -> None:
        """Stop the process and everything in its group; idempotent."""


class LogPump:
    """Reads a child's output line by line, hands each line on and keeps the last few."""

    def __init__(self, name: str, sink: LineSink, *, keep: int = TAIL_LINES) -> None:
        self.name = name
        self._sink = sink
        self._tail: deque[str] = deque(maxlen=keep)

    @property
    def last_lines(self) -> list[str]:
        """The last lines read, oldest first."""
        return list(self._tail)

    async def pump(self, stream: asyncio.StreamReader) -> None:
        """Read `stream` to its end."""
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line over LINE_LIMIT: readline has dropped it
                self._line("(an overlong line was dropped)")
                continue
            if not raw:
                return
            self._line(raw.decode("utf-8", "replace").rstrip("\r\n"))

    def _line(self, line: str) -> None:
        self._tail.append(line)
        self._sink(self.name, line)


def signal_group(pgid: int, signum: signal.Signals) -> None:
    """Send `signum` to a process group that may be gone already."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


async def finish(tasks: Sequence[asyncio.Task[None]], timeout_s: float) -> None:
    """Let `tasks` end by themselves for a while, then cancel what is left and await it."""
    if not tasks:
        return
    await asyncio.wait(tasks, timeout=timeout_s)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class ChildProcess:
    """A program started in a new session, with its stdout and stderr pumped as log lines."""

    def __init__(
        self,
        *,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        sink: LineSink,
        grace_s: float,
    ) -> None:
        self._name = name
        self._argv = list(argv)
        self._env = dict(env)
        self._grace_s = grace_s
        self._log = LogPump(name, sink)
        self._process: asyncio.subprocess.Process | None = None
        self._pumps: list[asyncio.Task[None]] = []
        self._stopped = False

    @property
    def name(self) -> str:
        """The name its log lines are prefixed with."""
        return self._name

    @property
    def pid(self) -> int | None:
        """Its process id once started."""
        return None if self._process is None else self._process.pid

    @property
    def last_lines(self) -> list[str]:
        """The last lines it printed, oldest first."""
        return self._log.last_lines

    async def start(self) -> None:
        """Start the program; OSError when it cannot be executed."""
        self._process = await asyncio.create_subprocess_exec(
            # Our stop() is the polite way; this is for when we die without running it.
            *dying_with_parent(self._argv),
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            limit=LINE_LIMIT,
        )
        streams = (self._process.stdout, self._process.stderr)
        self._pumps = [
            asyncio.create_task(self._log.pump(stream), name=f"{self._name}-log")
            for stream in streams
            if stream is not None
        ]

    async def wait(self) -> int | None:
        """Return once the program has exited and its output is read: its status."""
        if self._process is None:
            return None
        code = await self._process.wait()
        if self._pumps:  # its own children may hold the pipes open: do not wait long
            await asyncio.wait(self._pumps, timeout=DRAIN_TIMEOUT_S)
        return code

    async def stop(self) -> None:
        """SIGTERM to the group, SIGKILL after the grace period, then a sweep; idempotent."""
        process = self._process
        if process is None or self._stopped:
            return
        self._stopped = True
        if process.returncode is None:
            signal_group(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), self._grace_s)
            except TimeoutError:
                signal_group(process.pid, signal.SIGKILL)
                await process.wait()
        signal_group(process.pid, signal.SIGKILL)
        await finish(self._pumps, DRAIN_TIMEOUT_S)
