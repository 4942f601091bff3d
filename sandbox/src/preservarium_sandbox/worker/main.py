"""The worker process: seal itself, then answer jobs one at a time on stdin/stdout.

Jobs come in batches (one parser version a frame); each is run and answered on its own,
with its own deadline, limits, residue clearing and footprint check, exactly as if it
had come alone.

Started by the pool as `python -I -m preservarium_sandbox.worker LIMITS_JSON` with an
empty environment, in its own session. It imports everything first, then applies its
limits (preservarium_sandbox.worker.hardening), then runs parser code.
"""

from __future__ import annotations

import gc
import json
import resource
import signal
import sys
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from types import FrameType
from typing import Any

from preservarium.contract.kinds import ErrorKind

from preservarium_sandbox.engine.compiler import CompiledParser, compile_parser
from preservarium_sandbox.engine.errors import ScriptFailure
from preservarium_sandbox.engine.residue import forget_call_state
from preservarium_sandbox.engine.result import JobResult
from preservarium_sandbox.engine.runner import Deadline, failure_from, prepare, run_job
from preservarium_sandbox.limits import (
    CACHED_VERSIONS,
    CLEANUP_MS,
    START_ERROR_CHARS,
    Limits,
    cpu_soft_limit_for,
)
from preservarium_sandbox.worker.footprint import Footprint, return_freed_memory
from preservarium_sandbox.worker.hardening import harden
from preservarium_sandbox.worker.protocol import (
    encode_answer,
    encode_frame,
    read_frame_blocking,
    split_batch,
    write_bytes_blocking,
    write_frame_blocking,
)

JOBS_FD, ANSWERS_FD = 0, 1
COMPILED_FRAME = encode_frame({"stage": "compiled"})
UNENCODABLE = {
    "ok": False,
    "error": {"kind": "invalid_output", "message": "the answer could not be encoded", "line": None},
    "recycle": True,
}


@dataclass(frozen=True, slots=True)
class Handled:
    """A job's result and what the worker adds to it: whether it lacked the version's
    source, is to be replaced, compiled the version, and what it has spent."""

    result: JobResult
    need_source: bool
    recycle: bool
    cpu_s: float
    compiled: bool
    worker_ms: float


class DeadlineClock:
    """SIGALRM (wall clock) and SIGXCPU (CPU) both end the current call."""

    def __init__(self) -> None:
        self.fired = False
        signal.signal(signal.SIGALRM, self._fire)
        signal.signal(signal.SIGXCPU, self._fire)

    def _fire(self, signum: int, frame: FrameType | None) -> None:
        self.fired = True
        raise Deadline

    def arm(self, limits: Limits, *, compiling: bool) -> None:
        """Start the budget of one call (and re-arm the CPU soft limit)."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        soft = cpu_soft_limit_for(limits, usage.ru_utime + usage.ru_stime, compiling=compiling)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, limits.worker_cpu_budget_s))
        self.fired = False
        budget_ms = limits.timeout_ms + (limits.compile_timeout_ms if compiling else 0)
        signal.setitimer(signal.ITIMER_REAL, budget_ms / 1000)

    def arm_ms(self, milliseconds: int) -> None:
        """A bare wall-clock budget (CPU limits stay as they are)."""
        self.fired = False
        signal.setitimer(signal.ITIMER_REAL, milliseconds / 1000)

    def disarm(self) -> None:
        """Stop the budget."""
        signal.setitimer(signal.ITIMER_REAL, 0)


class Worker:
    """The job loop with its cache of compiled parser versions."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.clock = DeadlineClock()
        self.compiled: OrderedDict[str, CompiledParser | ScriptFailure] = OrderedDict()
        self.footprint = Footprint(slack_mb=limits.max_residue_mb)

    def _compiled(self, job: dict[str, Any]) -> CompiledParser | ScriptFailure | None:
        sha = job["sha"]
        if sha in self.compiled:
            self.compiled.move_to_end(sha)
            return self.compiled[sha]
        source = job.get("source")
        if source is None:
            return None
        try:
            result: CompiledParser | ScriptFailure = compile_parser(source)
        except ScriptFailure as failure:
            result = failure
        self.compiled[sha] = result
        if len(self.compiled) > CACHED_VERSIONS:
            _, evicted = self.compiled.popitem(last=False)
            if isinstance(evicted, CompiledParser):
                # Its template outlived the call that made it (older than generation 0):
                # freed now, under this compile's budget, rather than held until recycling.
                evicted.image.release()
                gc.collect(1)
        return result

    def _collect_after_timeout(self) -> bool:
        """Run a timed-out call's leftover finalizers under CLEANUP_MS; True if they ended."""
        try:
            self.clock.arm_ms(CLEANUP_MS)
            try:
                forget_call_state()
                gc.collect(0)
            finally:
                self.clock.disarm()
        except BaseException:  # the leftovers ran past their budget (or misbehaved)
            return False
        return not self.clock.fired

    def handle(
        self, job: dict[str, Any], on_compiled: Callable[[], None] = lambda: None
    ) -> Handled:
        """Answer one job; never raises for anything a parser does.

        After a first compile, `on_compiled` tells the parent, which then gives the call
        itself only the per-call deadline (not what is left of the compile budget).
        """
        compiling = job["sha"] not in self.compiled
        started = time.perf_counter()
        need_source = False
        try:
            self.clock.arm(self.limits, compiling=compiling)
            try:
                parser = self._compiled(job)
                if parser is None:
                    result, need_source = JobResult(ok=False), True
                elif isinstance(parser, ScriptFailure):
                    result = JobResult(ok=False, error=parser.to_wire())
                else:
                    if compiling:  # the compile had its own budget; the call gets a fresh one
                        prepare(parser, self.limits)  # the module body too, under that budget
                        self.clock.disarm()
                        on_compiled()
                        self.clock.arm(self.limits, compiling=False)
                    result = run_job(parser, job, self.limits)
            finally:
                self.clock.disarm()
        except BaseException as exc:  # Deadline, or a failure while handling one
            result = JobResult(ok=False, error=failure_from(exc, self.limits).to_wire())
        if self.clock.fired and result.ok:
            # The script swallowed its deadline and returned late: still a timeout.
            result = JobResult(ok=False, error=failure_from(Deadline(), self.limits).to_wire())
        kind = (result.error or {}).get("kind")
        # A call cut short by its deadline never reached its own cleanup: collect what it
        # left under a short budget of its own, or give the worker up.
        clean = kind != ErrorKind.TIMEOUT.value or self._collect_after_timeout()
        return Handled(
            result,
            need_source=need_source,
            # Memory the call left behind (pinned in some cache nobody cleans) is given up
            # with the worker: it would shrink the next parser's headroom.
            recycle=kind == ErrorKind.MEMORY_LIMIT.value or not clean or self.footprint.grown(),
            cpu_s=sum(resource.getrusage(resource.RUSAGE_SELF)[:2]),
            compiled=compiling and not need_source,
            worker_ms=(time.perf_counter() - started) * 1000,
        )


def _ignore_unraisable(unraisable: Any) -> None:
    """Exceptions in a parser's finalizers are not printed: stderr is not the parser's."""


def _prepare() -> None:
    # No automatic collection: each call collects its own garbage under its own deadline
    # (engine.runner.collect_leftovers). What exists now is frozen out of every collection.
    gc.disable()
    gc.collect()
    gc.freeze()
    sys.unraisablehook = _ignore_unraisable
    warnings.simplefilter("ignore")


def _answer(worker: Worker, job: dict[str, Any]) -> bool:
    """Answer one job; False when the rest of its batch must not run here (the worker
    is to be replaced, or needs the source first): the parent re-sends those."""

    def compiled() -> None:
        write_bytes_blocking(ANSWERS_FD, COMPILED_FRAME)

    try:
        handled = worker.handle(job, compiled)
        go_on = not handled.recycle and not handled.need_source
        frame = encode_answer(  # its bytes as the blob, not escaped in JSON
            handled.result,
            need_source=handled.need_source,
            recycle=handled.recycle,
            cpu_s=handled.cpu_s,
            compiled=handled.compiled,
            worker_ms=handled.worker_ms,
        )
    except Exception:  # anything the answer holds that JSON cannot carry
        frame, go_on = encode_frame(UNENCODABLE), False
    write_bytes_blocking(ANSWERS_FD, frame)
    return go_on


def main() -> None:
    """Entry point of the worker process."""
    try:
        limits = Limits(**json.loads(sys.argv[1]))
        return_freed_memory()
        report = harden(limits)
        worker = Worker(limits)
        _prepare()
    except Exception as exc:  # stderr goes nowhere: say why in the first frame
        write_frame_blocking(ANSWERS_FD, {"ready": False, "error": repr(exc)[:START_ERROR_CHARS]})
        raise SystemExit(1) from None
    write_frame_blocking(ANSWERS_FD, {"ready": True, "hardening": asdict(report)})
    while True:
        frame = read_frame_blocking(JOBS_FD)
        if frame is None:
            return
        for job in split_batch(frame):
            if not _answer(worker, job):
                break


if __name__ == "__main__":
    main()
