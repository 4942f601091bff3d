"""One worker process as the parent sees it: its pipes, what it has compiled, its
deaths and how to end it; and what a call on it comes to (`CallResult`): the worker's
`Answer`, or `JobTimedOut` / `WorkerDied` when the worker could not answer. The pool
returns these typed values and preservarium_sandbox.outcome alone turns them into error
kinds and messages."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass
from typing import Any

from preservarium.contract.kinds import ErrorKind

from preservarium_sandbox.limits import DEATH_WAIT_S, WORKER_EXIT_WAIT_S
from preservarium_sandbox.worker.protocol import Answer, Compiled, read_worker_frame


@dataclass(frozen=True, slots=True)
class JobTimedOut:
    """The job ran past its deadline: its worker was killed (and is replaced)."""

    timeout_ms: int


@dataclass(frozen=True, slots=True)
class WorkerDied:
    """The worker died, or broke the protocol, running the job: why, as the caller is told."""

    kind: ErrorKind
    message: str


# What one call on a worker comes to. JobTimedOut and WorkerDied cost the worker; so does
# an Answer that says `recycle` (the memory the call left behind).
CallResult = Answer | JobTimedOut | WorkerDied


class WorkerProcess:
    """One worker process and what the parent knows about it."""

    def __init__(self, process: asyncio.subprocess.Process, number: int) -> None:
        self.process = process
        self.number = number
        self.known: set[str] = set()
        self.calls = 0
        self.cpu_s = 0.0
        self.hardening: dict[str, Any] = {}

    @property
    def pid(self) -> int:
        """Process id."""
        return self.process.pid

    def send(self, frame: bytes) -> None:
        """Hand the worker a job frame (the pipe's buffer takes it; see next_answer)."""
        assert self.process.stdin is not None
        self.process.stdin.write(frame)

    async def next_answer(self, deadlines: tuple[float, float], max_answer: int) -> Answer:
        """Wait for the answer to the next job of the frame sent.

        `deadlines` is (until the first frame, after a `compiled` stage frame): a job that
        compiles first gets the compile budget for that, then only the call's own time.
        """
        assert self.process.stdin is not None and self.process.stdout is not None
        first, after_compile = deadlines
        async with asyncio.timeout(first):
            await self.process.stdin.drain()
            frame = await read_worker_frame(self.process.stdout, max_answer)
        if not isinstance(frame, Compiled):
            return frame
        async with asyncio.timeout(after_compile):
            frame = await read_worker_frame(self.process.stdout, max_answer)
        # A second stage frame answers nothing: read as an empty, malformed answer.
        return Answer() if isinstance(frame, Compiled) else frame

    def kill(self) -> None:
        """SIGKILL the worker's whole process group."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    async def close(self) -> None:
        """Ask the worker to exit (EOF on its jobs pipe); kill it if it does not."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), WORKER_EXIT_WAIT_S)
        except TimeoutError:
            self.kill()
            await self.process.wait()


def exited(worker: WorkerProcess) -> bool:
    if worker.process.returncode is not None:
        return True
    try:  # WNOWAIT: look without reaping (the event loop's child watcher reaps it)
        found = os.waitid(os.P_PID, worker.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:  # already reaped
        return True
    return found is not None


async def died(worker: WorkerProcess, exc: BaseException) -> WorkerDied:
    """Why `worker` could not answer (its pipe broke, or it broke the protocol: `exc`)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(worker.process.wait(), DEATH_WAIT_S)
    reason = death_reason(worker) or (
        ErrorKind.RUNTIME_ERROR,
        f"the sandbox worker broke the protocol: {exc}",
    )
    return WorkerDied(*reason)


def death_reason(worker: WorkerProcess) -> tuple[ErrorKind, str] | None:
    code = worker.process.returncode
    if code is None:
        return None
    if code == -signal.SIGXCPU:
        return ErrorKind.TIMEOUT, "the parser ran past its CPU limit"
    if code < 0:
        name = signal.Signals(-code).name
        return ErrorKind.RUNTIME_ERROR, f"the sandbox worker died ({name}) running the parser"
    return ErrorKind.RUNTIME_ERROR, f"the sandbox worker exited ({code}) running the parser"
