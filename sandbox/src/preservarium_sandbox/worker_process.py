"""One worker process as the parent sees it: its pipes, what it has compiled, its
deaths and how to end it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Any

from preservarium.contract.kinds import ErrorKind

from preservarium_sandbox.batches import Answer
from preservarium_sandbox.engine.errors import ScriptFailure
from preservarium_sandbox.limits import DEATH_WAIT_S, WORKER_EXIT_WAIT_S
from preservarium_sandbox.worker.protocol import read_frame


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
            answer = await read_frame(self.process.stdout, max_answer)
        if answer.get("stage") != "compiled":
            return answer
        async with asyncio.timeout(after_compile):
            return await read_frame(self.process.stdout, max_answer)

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


def failure(kind: ErrorKind, message: str) -> dict[str, Any]:
    """The parent's answer for a job whose worker could not answer it."""
    return {"ok": False, "error": ScriptFailure(kind, message).to_wire()}


def exited(worker: WorkerProcess) -> bool:
    if worker.process.returncode is not None:
        return True
    try:  # WNOWAIT: look without reaping (the event loop's child watcher reaps it)
        found = os.waitid(os.P_PID, worker.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:  # already reaped
        return True
    return found is not None


async def died(worker: WorkerProcess, exc: BaseException) -> dict[str, Any]:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(worker.process.wait(), DEATH_WAIT_S)
    reason = death_reason(worker) or (
        ErrorKind.RUNTIME_ERROR,
        f"the sandbox worker broke the protocol: {exc}",
    )
    return failure(*reason)


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
