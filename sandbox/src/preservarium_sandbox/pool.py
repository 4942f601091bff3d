"""The worker pool: long-lived worker processes, killed and replaced at their deadline.

`size` jobs run at once, turns shared round robin between parser versions while jobs
wait (preservarium_sandbox.fair); `spares` extra workers stand ready, so that a worker killed for
a runaway parser is replaced at once and other devices never wait for a process start.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from preservarium.contract.kinds import ErrorKind
from preservarium.lifecycle import AsyncLifecycle

from preservarium_sandbox.engine.errors import ScriptFailure
from preservarium_sandbox.fair import FairTurns
from preservarium_sandbox.limits import Limits
from preservarium_sandbox.worker.protocol import ProtocolError, encode_frame, read_frame

log = logging.getLogger("preservarium.sandbox.pool")
START_TIMEOUT_S = 30.0
# Replacements a parser version is charged for (a worn-out worker's is nobody's doing).
CHARGED_REPLACEMENTS = frozenset({"timeout", "died", "memory"})
RESPAWN_BACKOFF_S = (0.1, 0.5, 2.0)


class PoolClosedError(Exception):
    """The pool is stopping or stopped."""


class UnsendableJobError(ValueError):
    """The job cannot be encoded into a frame (out-of-contract values, too big): no
    worker was taken for it. The service validates requests so this stays unreachable."""


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

    def frame(self, *, with_source: bool, max_size: int) -> bytes:
        """The frame sent to a worker (see encode_frame for what it raises)."""
        return encode_frame(
            {
                "sha": self.sha,
                "source": self.source if with_source else None,
                "contact": self.contact,
                "identify": self.identify,
                "command": self.command,
            },
            self.payload,
            max_size,
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
        # Turns shared round robin between parser versions (fair.py), not first come.
        self._turns = FairTurns(size)
        self._all: set[WorkerProcess] = set()
        self._spawning: set[asyncio.Task[None]] = set()
        self._calls: set[asyncio.Future[dict[str, Any]]] = set()
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
        # Calls their callers gave up on still hold workers: end them (and those workers).
        running: list[asyncio.Future[Any]] = [*self._spawning, *self._calls]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await asyncio.gather(*(w.close() for w in list(self._all)), return_exceptions=True)
        self._all.clear()
        if self._cwd is not None:
            self._cwd.cleanup()

    @property
    def idle(self) -> int:
        """Workers ready for a job now."""
        return self._idle.qsize()

    @property
    def spawned(self) -> int:
        """Worker processes started since the pool was made (replacements included)."""
        return self._numbers

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
        if not self._closed:
            task = asyncio.create_task(self._respawn())
            self._spawning.add(task)
            task.add_done_callback(self._spawning.discard)
        try:
            self._on_restart(reason)
        except Exception:  # an observer's failure must not cost the pool a worker
            log.exception("the worker restart observer failed")

    async def _respawn(self) -> None:
        """Start a replacement, retrying: a failed start must not shrink the pool for good."""
        for attempt in itertools.count():
            if self._closed:
                return
            try:
                self._idle.put_nowait(await self._spawn())
                return
            except (RuntimeError, OSError):
                log.exception("could not replace a sandbox worker")
            await asyncio.sleep(RESPAWN_BACKOFF_S[min(attempt, len(RESPAWN_BACKOFF_S) - 1)])

    async def run(
        self,
        job: Job,
        admit: Callable[[], bool] | None = None,
        on_abandoned: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Run `job` on a worker and return its raw answer (checked by the caller).

        A missed deadline, a dead worker or a broken frame is answered here as a
        failure, and the worker is killed and replaced. `admit` is asked once a worker is
        free, after however long the job waited for one: False raises NotAdmittedError
        and the job does not run (a parser version quarantined meanwhile). A job that
        cannot be encoded raises UnsendableJobError before any worker is taken.

        The answer's `worker_replaced` says whether the call cost its worker (a timeout,
        a death, a memory recycle): the caller charges that to the parser version.

        A caller that gives up (is cancelled) before its job reached a worker withdraws
        it. Once sent, the job runs to its answer (its own deadline bounds it) and the
        worker is kept or replaced on that answer alone, which `on_abandoned` receives:
        killing the worker would let any caller, by giving up, cost a process start and
        charge the parser version with a replacement the parser never caused.
        """
        if self._closed:
            raise PoolClosedError("the sandbox is stopping")
        frame = self._encode(job, with_source=False)
        sent = asyncio.Event()
        call = asyncio.ensure_future(self._run_held(job, frame, admit, sent))
        self._calls.add(call)
        call.add_done_callback(self._calls.discard)
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            if not sent.is_set():
                call.cancel()
            call.add_done_callback(lambda done: _deliver(done, on_abandoned))
            raise

    async def _run_held(
        self, job: Job, frame: bytes, admit: Callable[[], bool] | None, sent: asyncio.Event
    ) -> dict[str, Any]:
        async with self._turns.turn(job.sha):
            worker = await self._ready_worker()
            # Whatever happens below (a cancel at stop, an exception nobody foresaw), the
            # worker goes back to the idle set or is replaced: the pool never shrinks.
            replace: str | None = None
            try:
                if admit is not None and not admit():
                    raise NotAdmittedError
                # From the first byte sent, an interrupted call leaves the worker in an
                # unknown state: it may still answer, so it is never handed to anyone else.
                replace = "interrupted"
                sent.set()
                answer, replace = await self._on_worker(worker, job, frame)
                answer["worker_died"] = replace == "died"
                answer["worker_replaced"] = replace in CHARGED_REPLACEMENTS
                return answer
            finally:
                self._settle(worker, replace)

    async def _ready_worker(self) -> WorkerProcess:
        """An idle worker that is still alive: one that died while idle (killed from
        outside) is replaced, and never charged to the next job's parser version."""
        while True:
            worker = await self._idle.get()
            if not _exited(worker):
                return worker
            self._replace(worker, "lost")

    def _settle(self, worker: WorkerProcess, replace: str | None) -> None:
        if replace is None:
            self._idle.put_nowait(worker)
        else:
            self._replace(worker, replace)

    def _encode(self, job: Job, *, with_source: bool) -> bytes:
        try:
            return job.frame(with_source=with_source, max_size=self.limits.job_frame_bytes())
        except (ValueError, TypeError, RecursionError, ProtocolError) as exc:
            raise UnsendableJobError(f"the job cannot be sent to a worker: {exc}") from exc

    async def _on_worker(
        self, worker: WorkerProcess, job: Job, frame: bytes
    ) -> tuple[dict[str, Any], str | None]:
        """The answer, and why the worker must be replaced (None: it may serve again)."""
        with_source = job.sha not in worker.known
        try:
            if with_source:
                frame = self._encode(job, with_source=True)
            answer = await self._exchange(worker, frame, with_source)
            if answer.get("need_source"):
                answer = await self._exchange(worker, self._encode(job, with_source=True), True)
        except TimeoutError:
            return _failure(
                ErrorKind.TIMEOUT,
                f"the parser ran past its limit of "
                f"{self.limits.timeout_ms} ms and its worker was killed",
            ), "timeout"
        except (ProtocolError, ConnectionError, OSError) as exc:
            return await _died(worker, exc), "died"
        worker.known.add(job.sha)
        worker.calls += 1
        cpu = answer.get("cpu_s")
        if type(cpu) is float or type(cpu) is int:
            worker.cpu_s = float(cpu)
        if answer.get("recycle") is True:
            return answer, "memory"
        return answer, "recycled" if self._worn_out(worker) else None

    async def _exchange(
        self, worker: WorkerProcess, frame: bytes, with_source: bool
    ) -> dict[str, Any]:
        call_deadline = self.limits.deadline_s(compiling=False)
        return await worker.exchange(
            frame,
            (self.limits.deadline_s(compiling=with_source), call_deadline),
            self.limits.answer_frame_bytes(),
        )

    def _worn_out(self, worker: WorkerProcess) -> bool:
        return (
            worker.calls >= self.limits.worker_max_calls
            or worker.cpu_s > self.limits.worker_cpu_budget_s / 2
        )


def _deliver(
    call: asyncio.Future[dict[str, Any]], to: Callable[[dict[str, Any]], None] | None
) -> None:
    """Hand an abandoned call's answer to `to` (nothing when it ended without one; its
    exception is read, so asyncio does not report it as never retrieved)."""
    if call.cancelled() or call.exception() is not None or to is None:
        return
    try:
        to(call.result())
    except Exception:  # an observer's failure must not surface as an unhandled callback
        log.exception("the abandoned-call observer failed")


def _failure(kind: ErrorKind, message: str) -> dict[str, Any]:
    return {"ok": False, "error": ScriptFailure(kind, message).to_wire()}


def _exited(worker: WorkerProcess) -> bool:
    if worker.process.returncode is not None:
        return True
    try:  # WNOWAIT: look without reaping (the event loop's child watcher reaps it)
        found = os.waitid(os.P_PID, worker.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:  # already reaped
        return True
    return found is not None


async def _died(worker: WorkerProcess, exc: BaseException) -> dict[str, Any]:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(worker.process.wait(), 0.5)
    reason = _death_reason(worker) or (
        ErrorKind.RUNTIME_ERROR,
        f"the sandbox worker broke the protocol: {exc}",
    )
    return _failure(*reason)


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
