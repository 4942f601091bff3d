"""The worker pool: long-lived worker processes, killed and replaced at their deadline.

`size` workers run at once, turns shared round robin between parser versions while jobs
wait (preservarium_sandbox.fair); `spares` extra workers stand ready, so that a worker killed for
a runaway parser is replaced at once and other devices never wait for a process start.
Jobs of one version that wait together go to a worker together, in one frame
(preservarium_sandbox.batches); each keeps its own deadline and answer, and the jobs a
lost worker never answered run again on another.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import logging
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from preservarium.lifecycle import AsyncLifecycle

from preservarium_sandbox.batches import Pending, QueueKey, VersionQueues, share
from preservarium_sandbox.fair import FairTurns, leave_one_for_live
from preservarium_sandbox.limits import (
    ANSWER_BUFFER_BYTES,
    BATCH_HEAD_BYTES,
    ESCAPE_FACTOR,
    MAX_BACKGROUND_BATCH_JOBS,
    RESPAWN_BACKOFF_S,
    WORKER_START_TIMEOUT_S,
    Limits,
)
from preservarium_sandbox.quarantine import NotAdmittedError
from preservarium_sandbox.worker.protocol import (
    Answer,
    ProtocolError,
    encode_batch,
    encode_json,
    read_hello,
)
from preservarium_sandbox.worker_process import (
    CallResult,
    JobTimedOut,
    WorkerProcess,
    died,
    exited,
)

log = logging.getLogger("preservarium.sandbox.pool")


class PoolClosedError(Exception):
    """The pool is stopping or stopped."""


class UnsendableJobError(ValueError):
    """The job cannot be encoded into a frame (out-of-contract values, too big): no
    worker was taken for it. The service validates requests so this stays unreachable."""


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    """One call for a worker: the parser version (and its source) and what to run."""

    sha: str
    source: str
    contact: dict[str, Any] | None = None
    identify: bool = False
    command: dict[str, Any] | None = None
    payload: bytes = b""  # the contact's payload, sent as the frame's blob
    background: bool = False  # a replay's call: served after live ones (fair.py)

    def item(self) -> bytes:
        """The job's own part of a job frame (see encode_json for what it raises)."""
        return encode_json({
            "contact": self.contact,
            "identify": self.identify,
            "command": self.command,
            "size": len(self.payload),
        })  # fmt: skip


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
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        """`on_batch` is told how many jobs each frame handed to a worker carried."""
        self.size = size
        self.limits = limits
        self.spares = spares
        self._on_restart = on_restart or (lambda reason: None)
        self._on_batch = (lambda size: None) if on_batch is None else on_batch
        self._queued = VersionQueues()
        # Per version and lane, the task waiting for a turn for its queued jobs.
        self._leads: dict[QueueKey, asyncio.Task[None]] = {}
        self._running = 0  # batches on workers now
        self._idle: asyncio.Queue[WorkerProcess] = asyncio.Queue()
        # Turns shared round robin between parser versions (fair.py), not first come;
        # background jobs (replays) wait for live ones and never hold every worker.
        self._turns = FairTurns(size, background_cap=leave_one_for_live(size))
        self._all: set[WorkerProcess] = set()
        self._spawning: set[asyncio.Task[None]] = set()
        self._calls: set[asyncio.Task[None]] = set()
        self._closed = True
        self._numbers = 0
        self._cwd: tempfile.TemporaryDirectory[str] | None = None
        self.hardening: dict[str, Any] = {}

    @property
    def live_delayed(self) -> int:
        """Live calls that so far waited for a worker while background calls held one
        (FairTurns.live_delayed)."""
        return self._turns.live_delayed

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
        for pending in self._queued.drain():  # jobs whose wait never began
            pending.future.cancel()
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
            limit=ANSWER_BUFFER_BYTES,
        )  # fmt: skip
        self._numbers += 1
        worker = WorkerProcess(process, self._numbers)
        self._all.add(worker)
        try:
            assert process.stdout is not None
            async with asyncio.timeout(WORKER_START_TIMEOUT_S):
                hello = await read_hello(process.stdout)
        except (ProtocolError, TimeoutError) as exc:
            self._discard(worker)
            raise RuntimeError(f"sandbox worker failed to start: {exc}") from exc
        if not hello.ready:
            self._discard(worker)
            raise RuntimeError(f"sandbox worker failed to start: {hello.error or None}")
        worker.hardening = hello.hardening
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
        on_abandoned: Callable[[CallResult], None] | None = None,
    ) -> CallResult:
        """Run `job` on a worker and return what came of it: the worker's Answer (its
        result unchecked: preservarium_sandbox.outcome reads it), or JobTimedOut or
        WorkerDied when the worker could not answer.

        A missed deadline, a dead worker or a broken frame kills the worker and replaces
        it; the other jobs of its batch that it had not answered yet run again on another
        worker. `admit` (preservarium_sandbox.quarantine's admission check) is asked once
        a worker is free, after however long the job waited for one: False raises
        NotAdmittedError and the job does not run (a parser version quarantined
        meanwhile). A job that cannot be encoded raises UnsendableJobError before any
        worker is taken.

        JobTimedOut, WorkerDied and an Answer that says `recycle` (a memory recycle) cost
        the call its worker: the caller charges that to the parser version.

        A caller that gives up (is cancelled) before its job reached a worker withdraws
        it. Once sent, the job runs to its answer (its own deadline bounds it) and the
        worker is kept or replaced on that answer alone, which `on_abandoned` receives:
        killing the worker would let any caller, by giving up, cost a process start and
        charge the parser version with a replacement the parser never caused.
        """
        if self._closed:
            raise PoolClosedError("the sandbox is stopping")
        try:
            item = job.item()
        except (ValueError, TypeError, RecursionError) as exc:
            raise UnsendableJobError(f"the job cannot be sent to a worker: {exc}") from exc
        pending = Pending(job, item, job.payload, admit)
        self._enqueue(pending)
        try:
            return await asyncio.shield(pending.future)
        except asyncio.CancelledError:
            if not pending.sent:
                self._withdraw(pending)
            pending.future.add_done_callback(lambda done: _deliver(done, on_abandoned))
            raise

    def _enqueue(self, pending: Pending, *, first: bool = False) -> None:
        self._queued.add(pending, first=first)
        self._ensure_lead(pending.key)

    def _ensure_lead(self, key: QueueKey) -> None:
        """One task at a time waits for a turn on behalf of a version's waiting jobs
        (per lane: a replay's jobs wait for their own turn)."""
        if key in self._leads:
            return
        lead = self._leads[key] = asyncio.ensure_future(self._lead(key))
        self._calls.add(lead)
        lead.add_done_callback(self._calls.discard)

    def _withdraw(self, pending: Pending) -> None:
        pending.withdrawn = True
        self._queued.remove(pending)
        pending.future.cancel()

    async def _lead(self, key: QueueKey) -> None:
        """Wait for a turn for queue `key` (a version, in its lane); then run the jobs
        waiting in it (their share, see batches.share) on one worker."""
        try:
            sha, background = key
            async with self._turns.turn(sha, background=background):
                self._leads.pop(key, None)  # jobs arriving from now on need a turn of their own
                worker = await self._ready_worker()
                free = self.size - self._running - 1
                waiting = self._queued.waiting(key)
                limit = MAX_BACKGROUND_BATCH_JOBS if background else share(waiting, free)
                batch = self._queued.take(key, limit, self._fits)
                if self._queued.waiting(key):
                    self._ensure_lead(key)
                if not batch:  # withdrawn meanwhile, or taken by an earlier turn
                    self._settle(worker, None)
                    return
                self._running += 1
                try:
                    await self._run_batch(worker, batch)
                finally:
                    self._running -= 1
        except Exception:  # never leave callers waiting on a lead that failed
            log.exception("a sandbox version's turn failed")
            for pending in self._queued.take(key, self._queued.waiting(key), lambda *_: True):
                pending.fail(PoolClosedError("the sandbox could not run the job"))
        finally:
            if self._leads.get(key) is asyncio.current_task():
                del self._leads[key]

    def _fits(self, batch: list[Pending], pending: Pending) -> bool:
        """Whether `pending` still fits a frame of `batch` (with the source, at worst)."""
        size = sum(len(p.item) + len(p.payload) for p in (*batch, pending))
        worst_source = len(pending.job.source) * ESCAPE_FACTOR + BATCH_HEAD_BYTES  # escaped
        return size + worst_source < self.limits.job_frame_bytes()

    async def _run_batch(self, worker: WorkerProcess, batch: list[Pending]) -> None:
        """Run `batch` on `worker` and resolve every job of it, one way or another; the
        worker goes back to the idle set or is replaced: the pool never shrinks."""
        replace: str | None = None
        try:
            batch = [p for p in batch if _admitted(p)]
            if not batch:
                return
            with_source = batch[0].sha not in worker.known
            frame = self._encode(batch, with_source=with_source)
            # From the first byte sent, an interrupted batch leaves the worker in an
            # unknown state: it may still answer, so it is never handed to anyone else.
            replace = "interrupted"
            for pending in batch:
                pending.sent = True
            self._on_batch(len(batch))
            worker.send(frame)
            replace, unanswered = await self._on_worker(worker, batch, with_source)
            for pending in reversed(unanswered):  # not failed, not lost: run again elsewhere
                if self._closed:
                    pending.fail(PoolClosedError("the sandbox is stopping"))
                else:
                    self._enqueue(pending, first=True)
        except asyncio.CancelledError:  # the pool is stopping
            for pending in batch:
                pending.future.cancel()
            raise
        except Exception as exc:  # a step nobody foresaw: its callers hear of it
            for pending in batch:
                pending.fail(exc)
        finally:
            self._settle(worker, replace)

    async def _on_worker(
        self, worker: WorkerProcess, batch: list[Pending], with_source: bool
    ) -> tuple[str | None, list[Pending]]:
        """Answer the jobs of `batch` (sent) one by one as the worker does; returns why
        the worker must be replaced (None: it may serve again) and the jobs it never
        answered (after a job cost it its life)."""
        sha = batch[0].sha
        for index, pending in enumerate(batch):
            compiling = with_source and index == 0
            try:
                answer = await self._next_answer(worker, compiling)
                if index == 0 and answer.need_source:  # it forgot the version
                    worker.send(self._encode(batch, with_source=True))
                    answer = await self._next_answer(worker, True)
            except TimeoutError:
                pending.answer(JobTimedOut(self.limits.timeout_ms))
                return "timeout", batch[index + 1 :]
            except (ProtocolError, ConnectionError, OSError) as exc:
                pending.answer(await died(worker, exc))
                return "died", batch[index + 1 :]
            worker.known.add(sha)
            worker.calls += 1
            if answer.cpu_s is not None:
                worker.cpu_s = answer.cpu_s
            pending.answer(answer)
            if answer.recycle:
                return "memory", batch[index + 1 :]
        return "recycled" if self._worn_out(worker) else None, []

    def _encode(self, batch: list[Pending], *, with_source: bool) -> bytes:
        job = batch[0].job
        try:
            return encode_batch(
                job.sha,
                job.source if with_source else None,
                [(p.item, p.payload) for p in batch],
                self.limits.job_frame_bytes(),
            )
        except (ValueError, TypeError, RecursionError, ProtocolError) as exc:
            raise UnsendableJobError(f"the job cannot be sent to a worker: {exc}") from exc

    async def _next_answer(self, worker: WorkerProcess, compiling: bool) -> Answer:
        call_deadline = self.limits.deadline_s(compiling=False)
        return await worker.next_answer(
            (self.limits.deadline_s(compiling=compiling), call_deadline),
            self.limits.answer_frame_bytes(),
        )

    async def _ready_worker(self) -> WorkerProcess:
        """An idle worker that is still alive: one that died while idle (killed from
        outside) is replaced, and never charged to the next job's parser version."""
        while True:
            worker = await self._idle.get()
            if not exited(worker):
                return worker
            self._replace(worker, "lost")

    def _settle(self, worker: WorkerProcess, replace: str | None) -> None:
        if replace is None:
            self._idle.put_nowait(worker)
        else:
            self._replace(worker, replace)

    def _worn_out(self, worker: WorkerProcess) -> bool:
        return (
            worker.calls >= self.limits.worker_max_calls
            or worker.cpu_s > self.limits.worker_cpu_budget_s / 2
        )


def _deliver(call: asyncio.Future[CallResult], to: Callable[[CallResult], None] | None) -> None:
    """Hand an abandoned call's answer to `to` (nothing when it ended without one; its
    exception is read, so asyncio does not report it as never retrieved)."""
    if call.cancelled() or call.exception() is not None or to is None:
        return
    try:
        to(call.result())
    except Exception:  # an observer's failure must not surface as an unhandled callback
        log.exception("the abandoned-call observer failed")


def _admitted(pending: Pending) -> bool:
    """Ask a job's `admit` check, now that a worker is free for it; a job refused (or
    whose check fails) is answered so, and does not run."""
    if pending.withdrawn:
        return False
    try:
        if pending.admit is None or pending.admit():
            return True
        pending.fail(NotAdmittedError())
    except Exception as exc:
        pending.fail(exc)
    return False
