"""The worker pool: long-lived worker processes, killed and replaced at their deadline.

`size` jobs run at once; `spares` extra workers stand ready, so that a worker killed for
a runaway parser is replaced at once and other devices never wait for a process start.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from preservarium.lifecycle import AsyncLifecycle

from preservarium_sandbox.engine.errors import ErrorKind, ScriptFailure
from preservarium_sandbox.limits import Limits
from preservarium_sandbox.worker.protocol import ProtocolError, encode_frame, read_frame

log = logging.getLogger("preservarium.sandbox.pool")
START_TIMEOUT_S = 30.0
ANSWER_OVERHEAD = 64 * 1024


class PoolClosedError(Exception):
    """The pool is stopping or stopped."""


class NotAdmittedError(Exception):
    """The job's `admit` check said no once a worker was free: it never ran."""


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    """One call for a worker: the parser version (and its source) and what to run."""

    sha: str
    source: str
    contact: dict[str, Any] | None = None
    identify: bool = False
    command: dict[str, Any] | None = None
    payload: bytes = b""  # the contact's payload, sent as the frame's blob

    def frame(self, *, with_source: bool) -> bytes:
        """The frame sent to a worker."""
        return encode_frame(
            {
                "sha": self.sha,
                "source": self.source if with_source else None,
                "contact": self.contact,
                "identify": self.identify,
                "command": self.command,
            },
            self.payload,
        )


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

    async def exchange(
        self, frame: bytes, deadlines: tuple[float, float], max_answer: int
    ) -> dict[str, Any]:
        """Send a job and wait for its answer.

        `deadlines` is (until the first frame, after a `compiled` stage frame): a job that
        compiles first gets the compile budget for that, then only the call's own time.
        """
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(frame)
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
            await asyncio.wait_for(self.process.wait(), 2)
        except TimeoutError:
            self.kill()
            await self.process.wait()


Observer = Callable[[str], None]


class WorkerPool(AsyncLifecycle):
    """Runs jobs on worker processes with hard deadlines."""

    def __init__(
        self,
        *,
        size: int,
        limits: Limits,
        spares: int = 1,
        on_restart: Observer | None = None,
    ) -> None:
        self.size = size
        self.limits = limits
        self.spares = spares
        self._on_restart = on_restart or (lambda reason: None)
        self._idle: asyncio.Queue[WorkerProcess] = asyncio.Queue()
        self._slots = asyncio.Semaphore(size)
        self._all: set[WorkerProcess] = set()
        self._spawning: set[asyncio.Task[None]] = set()
        self._closed = True
        self._numbers = 0
        self._cwd: tempfile.TemporaryDirectory[str] | None = None
        self.hardening: dict[str, Any] = {}

    async def start(self) -> None:
        """Start size + spares workers and wait until they are ready."""
        self._closed = False
        self._cwd = tempfile.TemporaryDirectory(prefix="preservarium-worker-")
        workers = await asyncio.gather(*(self._spawn() for _ in range(self.size + self.spares)))
        for worker in workers:
            self._idle.put_nowait(worker)
        self.hardening = workers[0].hardening

    async def stop(self) -> None:
        """Stop every worker; idempotent."""
        if self._closed:
            return
        self._closed = True
        for task in list(self._spawning):
            task.cancel()
        await asyncio.gather(*self._spawning, return_exceptions=True)
        await asyncio.gather(*(w.close() for w in list(self._all)), return_exceptions=True)
        self._all.clear()
        if self._cwd is not None:
            self._cwd.cleanup()

    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers."""
        return sorted(w.pid for w in self._all)

    async def _spawn(self) -> WorkerProcess:
        limits = json.dumps(dataclasses.asdict(self.limits))
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-X", "utf8", "-m", "preservarium_sandbox.worker", limits,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # Never the service's own stderr: a parser could flood it or forge log lines.
            stderr=subprocess.DEVNULL,
            env={},
            cwd=self._cwd.name if self._cwd else "/",
            start_new_session=True,
            limit=2**22,
        )  # fmt: skip
        self._numbers += 1
        worker = WorkerProcess(process, self._numbers)
        self._all.add(worker)
        try:
            assert process.stdout is not None
            async with asyncio.timeout(START_TIMEOUT_S):
                hello = await read_frame(process.stdout)
        except (ProtocolError, TimeoutError) as exc:
            self._discard(worker)
            raise RuntimeError(f"sandbox worker failed to start: {exc}") from exc
        if hello.get("ready") is not True:
            self._discard(worker)
            raise RuntimeError(f"sandbox worker failed to start: {hello.get('error')}")
        worker.hardening = dict(hello.get("hardening") or {})
        return worker

    def _discard(self, worker: WorkerProcess) -> None:
        worker.kill()
        self._all.discard(worker)
        # Reap it in the background so no zombie is left.
        task = asyncio.ensure_future(worker.process.wait())
        task.add_done_callback(lambda _: None)

    def _replace(self, worker: WorkerProcess, reason: str) -> None:
        self._discard(worker)
        self._on_restart(reason)
        if self._closed:
            return

        async def respawn() -> None:
            try:
                self._idle.put_nowait(await self._spawn())
            except RuntimeError:
                log.exception("could not replace a sandbox worker")

        task = asyncio.create_task(respawn())
        self._spawning.add(task)
        task.add_done_callback(self._spawning.discard)

    async def run(self, job: Job, admit: Callable[[], bool] | None = None) -> dict[str, Any]:
        """Run `job` on a worker and return its raw answer (checked by the caller).

        A missed deadline, a dead worker or a broken frame is answered here as a
        failure, and the worker is killed and replaced. `admit` is asked once a worker is
        free, after however long the job waited for one: False raises NotAdmittedError
        and the job does not run (a parser version quarantined meanwhile).
        """
        if self._closed:
            raise PoolClosedError("the sandbox is stopping")
        async with self._slots:
            worker = await self._idle.get()
            if admit is not None:
                try:
                    admitted = admit()
                except BaseException:
                    self._idle.put_nowait(worker)
                    raise
                if not admitted:
                    self._idle.put_nowait(worker)
                    raise NotAdmittedError
            try:
                return await self._on_worker(worker, job)
            except asyncio.CancelledError:
                # The caller gave up mid-job: the worker may still answer, so it is never
                # handed to anyone else; a fresh one takes its place.
                if worker in self._all:
                    self._replace(worker, "abandoned")
                raise

    async def _on_worker(self, worker: WorkerProcess, job: Job) -> dict[str, Any]:
        with_source = job.sha not in worker.known
        try:
            answer = await self._exchange(worker, job, with_source)
            if answer.get("need_source"):
                answer = await self._exchange(worker, job, True)
        except TimeoutError:
            self._replace(worker, "timeout")
            return _failure(
                ErrorKind.TIMEOUT,
                f"the parser ran past its limit of "
                f"{self.limits.timeout_ms} ms and its worker was killed",
            )
        except (ProtocolError, ConnectionError, OSError) as exc:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(worker.process.wait(), 0.5)
            reason = _death_reason(worker) or (
                ErrorKind.RUNTIME_ERROR,
                f"the sandbox worker broke the protocol: {exc}",
            )
            self._replace(worker, "died")
            answer = _failure(*reason)
            answer["worker_died"] = True  # costly: it counts toward quarantine
            return answer
        worker.known.add(job.sha)
        worker.calls += 1
        cpu = answer.get("cpu_s")
        if type(cpu) is float or type(cpu) is int:
            worker.cpu_s = float(cpu)
        if answer.get("recycle") is True:
            self._replace(worker, "memory")
        elif self._worn_out(worker):
            self._replace(worker, "recycled")
        else:
            self._idle.put_nowait(worker)
        return answer

    async def _exchange(self, worker: WorkerProcess, job: Job, with_source: bool) -> dict[str, Any]:
        call_deadline = self.limits.deadline_s(compiling=False)
        return await worker.exchange(
            job.frame(with_source=with_source),
            (self.limits.deadline_s(compiling=with_source), call_deadline),
            # The parse output cap, plus room for the reply, warnings and bookkeeping.
            self.limits.max_output_bytes + ANSWER_OVERHEAD,
        )

    def _worn_out(self, worker: WorkerProcess) -> bool:
        return (
            worker.calls >= self.limits.worker_max_calls
            or worker.cpu_s > self.limits.worker_cpu_budget_s / 2
        )


def _failure(kind: ErrorKind, message: str) -> dict[str, Any]:
    return {"ok": False, "error": ScriptFailure(kind, message).to_wire()}


def _death_reason(worker: WorkerProcess) -> tuple[ErrorKind, str] | None:
    code = worker.process.returncode
    if code is None:
        return None
    if code == -signal.SIGXCPU:
        return ErrorKind.TIMEOUT, "the parser ran past its CPU limit"
    if code < 0:
        name = signal.Signals(-code).name
        return ErrorKind.RUNTIME_ERROR, f"the sandbox worker died ({name}) running the parser"
    return ErrorKind.RUNTIME_ERROR, f"the sandbox worker exited ({code}) running the parser"
