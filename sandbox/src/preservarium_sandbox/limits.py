"""The sandbox's limits in one table, and the pure function that turns them into rlimits.

| limit | default | enforced by |
|---|---|---|
| wall clock per call | 100 ms (PRESERVARIUM_SANDBOX_TIMEOUT_MS, max 5000) | in-worker alarm, |
| | | then SIGKILL of the worker's process group |
| first compile of a version | 5000 ms | the same, with the compile budget |
| CPU per call | wall clock + 1 s | RLIMIT_CPU soft limit (SIGXCPU) re-armed before every call |
| CPU per worker | 3600 s | RLIMIT_CPU hard limit; the pool recycles workers before it |
| memory per worker | 256 MiB (PRESERVARIUM_SANDBOX_MEMORY_MB) | RLIMIT_AS |
| memory left behind by a call | 32 MiB over the worker's start | worker replaced after the call |
| files written | none | RLIMIT_FSIZE = 0, seccomp |
| open descriptors | 16 | RLIMIT_NOFILE |
| core dumps | none | RLIMIT_CORE = 0 |
| source | 256 KiB | checked before compiling |
| parse output | 256 KiB as JSON, depth 32 | worker, then the parent again |
| reply / format_command output | 1024 bytes | worker, then the parent again |
| a gRPC request | about 1 MiB (Limits.request_bytes) | gRPC (RESOURCE_EXHAUSTED) |
| contact payload | 64 KiB | the gRPC edge (INVALID_ARGUMENT) |
| command params | 64 KiB of strict JSON, depth 32 | the gRPC edge (INVALID_ARGUMENT) |
| device attributes | 16 KiB of strict JSON, depth 8 | at write, then the gRPC edge |
| other request text | 1024 characters a field, 64 query entries | the gRPC edge |
| ParseStream requests in flight | 64 a stream (answered or not yet read) | the service stops |
| | | reading the stream (gRPC flow control) |
| frames | sized from the limits above | both ends of the worker pipe |
| worker replacements | 5 a version in 10 s (QuarantinePolicy) | quarantine.py |
| TestParser lane | 1 worker + 1 spare of its own, 1 call at a time, 2 s wait, | trials.py |
| | failures that cost a worker remembered 60 s | |
| compile cost | chains of 32 links, 20,000 summed past 4 a chain, nesting 64 | source_scan.py |

Fixed limits: the constants below the dataclasses. Some bound the engine inside the
worker, which takes them from here rather than from the parent's `Limits` (they are no
operator's choice); the others bound the parent's own bookkeeping. Each says why.

| fixed limit | value | enforced by |
|---|---|---|
| MAX_MESSAGE_CHARS | 512 characters an error message | engine (errors, runner), |
| | | the parent again |
| MAX_TOKEN_CHARS | 256 characters a token() credential | engine.outputs |
| MAX_TUPLE_DEPTH | 200 levels of nested tuples | engine.nesting |
| TUPLE_WALK_BUDGET | 4096 tuples walked a check | engine.nesting |
| TEMPLATE_MAX_NODES | 50,000 objects copied from a module template | engine.template |
| TEMPLATE_MAX_DEPTH | 100 levels copied from a module template | engine.template |
| MAX_TEMPLATE_BYTES | 256 KiB a kept module template | engine.template |
| CACHED_VERSIONS | 64 compiled versions a worker | worker.main |
| CLEANUP_MS | 25 ms for a timed-out call's leftovers | worker.main |
| MAX_BATCH_JOBS | 16 jobs a frame | batches.py |
| MAX_BACKGROUND_BATCH_JOBS | 1 job a frame of a replay's calls | pool.py |
| WORKER_START_TIMEOUT_S | 30 s for a worker's first frame | pool.py |
| START_ERROR_CHARS | 1000 characters of why a worker could not start | worker.main |
| ANSWER_BUFFER_BYTES | 4096 KiB of a worker's answers read ahead; reading | pool.py (asyncio) |
| | | pauses past twice this |
| BATCH_HEAD_BYTES | 1024 bytes of a job frame's head, counted per batch | pool.py |
| RESPAWN_BACKOFF_S | 0.1, 0.5, then 2 s between failed starts | pool.py |
| WORKER_EXIT_WAIT_S | 2 s for a worker to exit before it is killed | worker_process.py |
| DEATH_WAIT_S | 0.5 s to read a dead worker's exit status | worker_process.py |
| MAX_NAME_SHOWN | 128 characters of an unknown device type repeated | service.py |
| PROBATION_SLOTS_KEPT | 10,000 versions on probation remembered | quarantine.py |
| CHURN_VERSIONS_KEPT | 1024 versions' replacement windows kept | quarantine.py |
| PINNED_VERSIONS | 8 versions asked for by number kept | catalog.py |
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from typing import TYPE_CHECKING

from preservarium.attributes import MAX_ATTRIBUTES_BYTES
from preservarium.parser_source import MAX_SOURCE_BYTES

if TYPE_CHECKING:  # the worker imports this module and must stay free of pydantic
    from preservarium.settings import Settings


@dataclass(frozen=True, slots=True)
class Limits:
    """What one parser call may use. Frozen: pass it down, never mutate it."""

    timeout_ms: int = 100
    compile_timeout_ms: int = 5000
    memory_mb: int = 256
    kill_margin_ms: int = 50
    cpu_margin_s: int = 1
    max_source_bytes: int = MAX_SOURCE_BYTES
    max_output_bytes: int = 256 * 1024
    max_output_depth: int = 32
    max_bytes_output: int = 1024
    max_warnings: int = 32
    max_warning_chars: int = 512
    max_print_chars: int = 4096
    max_residue_mb: int = 32
    max_open_files: int = 16
    worker_cpu_budget_s: int = 3600
    worker_max_calls: int = 20_000
    max_payload_bytes: int = 64 * 1024
    max_params_bytes: int = 64 * 1024
    max_params_depth: int = 32
    # The depth bound is preservarium.attributes' own: the registry never holds deeper.
    max_attributes_bytes: int = MAX_ATTRIBUTES_BYTES
    max_field_chars: int = 1024
    max_query_entries: int = 64
    max_device_id_chars: int = 64
    max_stream_in_flight: int = 64

    def __post_init__(self) -> None:
        # A table whose largest legal frame the pipe cannot carry is refused at start,
        # not found out as a "protocol violation" that kills a worker mid-call.
        largest = max(self.job_frame_bytes(), self.answer_frame_bytes())
        if largest > MAX_FRAME_BYTES:
            raise ValueError(f"these limits need frames of {largest} bytes, over {MAX_FRAME_BYTES}")

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """The limits the operator configured."""
        return cls(timeout_ms=settings.sandbox_timeout_ms, memory_mb=settings.sandbox_memory_mb)

    def deadline_s(self, *, compiling: bool) -> float:
        """Seconds the parent waits for an answer before it kills the worker."""
        budget = self.timeout_ms + (self.compile_timeout_ms if compiling else 0)
        return (budget + self.kill_margin_ms) / 1000

    def answer_frame_bytes(self) -> int:
        """The largest answer a worker may legally send: the document (sent raw), the
        warnings, reply, command bytes and messages at their worst JSON growth, and slack."""
        text_chars = (
            self.max_warnings * self.max_warning_chars
            + 2 * MAX_MESSAGE_CHARS  # the call's error, or the command's
            + self.max_print_chars  # what the call printed
            + self.max_device_id_chars
        )
        base64_bytes = 2 * (4 * (self.max_bytes_output + 2) // 3)  # reply, command payload
        return self.max_output_bytes + text_chars * ESCAPE_FACTOR + base64_bytes + FRAME_SLACK

    def request_bytes(self) -> int:
        """The largest gRPC request a caller may legally send (TestParser with everything
        at its limit, text at 4 bytes a character), and slack: gRPC refuses larger ones
        before they are read into memory."""
        text_chars = (6 + 2 * self.max_query_entries + 3) * self.max_field_chars
        limited = (
            self.max_source_bytes + self.max_payload_bytes + self.max_params_bytes
            + 2 * self.max_attributes_bytes  # the contact's and the command's
        )  # fmt: skip
        return limited + 4 * text_chars + FRAME_SLACK

    def job_frame_bytes(self) -> int:
        """The largest job the parent may send: the source, params and contact text at
        their worst JSON growth, the payload (sent raw), and slack."""
        contact_chars = (5 + 2 * self.max_query_entries) * self.max_field_chars
        command_chars = 3 * self.max_field_chars
        escaped = (
            self.max_source_bytes + self.max_params_bytes + 2 * self.max_attributes_bytes
            + contact_chars + command_chars
        )  # fmt: skip
        return self.max_payload_bytes + escaped * ESCAPE_FACTOR + FRAME_SLACK


@dataclass(frozen=True, slots=True)
class SourceScanLimits:
    """Static bounds on a source's compile cost, checked before it is compiled.

    RestrictedPython's compile time grows with the square of a chain of attribute or
    subscript links (`a.b.c...`, 200 links take ~140 ms a line): long chains are refused,
    and links past the first few are summed over the whole source.
    """

    max_chain: int = 32
    free_links: int = 4
    max_chain_cost: int = 20_000
    max_nesting: int = 64


@dataclass(frozen=True, slots=True)
class TrialLimits:
    """TestParser's own lane: its pool, how many calls run and wait, what it remembers."""

    workers: int = 1
    spares: int = 1
    max_wait_s: float = 2.0
    remember_failures_s: float = 60.0
    remembered_sources: int = 1024
    scan: SourceScanLimits = SourceScanLimits()


@dataclass(frozen=True, slots=True)
class QuarantinePolicy:
    """How many costly failures in a row, or worker replacements in a window, bench a
    version, and how long the bench lasts."""

    threshold: int = 3
    cooldown_s: float = 30.0
    churn_limit: int = 5
    churn_window_s: float = 10.0


# The worst growth of one character in a JSON frame: a control character becomes \u00XX
# (and a short number such as 1e9 grows less than that when written back).
ESCAPE_FACTOR = 6
# Room for the frame's keys, numbers and bookkeeping fields.
FRAME_SLACK = 64 * 1024
# The pipe's absolute ceiling, checked at both ends before a length is trusted; each
# direction's own cap (Limits.job_frame_bytes, Limits.answer_frame_bytes) is tighter.
MAX_FRAME_BYTES = 8 * 1024 * 1024

# Fixed limits (the second table above). Nothing here imports the engine: the engine
# and the worker import these.

# An error message a parser's failure carries (the rest is cut): the parent checks again.
MAX_MESSAGE_CHARS = 512
# A token() credential: longer than any credential a device sends.
MAX_TOKEN_CHARS = 256
# Tuples a parser builds: a depth that can never overflow the C stack when the tuple is
# compared, hashed or printed (engine.nesting); the walk of one check gives up (accepting)
# after TUPLE_WALK_BUDGET tuples, so a wide structure costs its builder, not the sandbox.
MAX_TUPLE_DEPTH = 200
TUPLE_WALK_BUDGET = 4096
# Module templates (engine.template): beyond these, copying costs about what executing
# the module does, and the copier's recursion stays far from the interpreter's limit.
TEMPLATE_MAX_NODES = 50_000
TEMPLATE_MAX_DEPTH = 100
# A template stays in its worker while its version is cached (CACHED_VERSIONS): 64 of
# these stay well under the default Limits.max_residue_mb (32 MiB), over which the worker
# is replaced. A larger module is executed for every call, as before.
MAX_TEMPLATE_BYTES = 256 * 1024
# Compiled versions a worker keeps (least recently used first out).
CACHED_VERSIONS = 64
# The budget of a timed-out call's leftover finalizers; past it, the worker is replaced.
CLEANUP_MS = 25
# A batch takes one turn of the fair rotation: a bigger one would make other versions
# wait longer for theirs, while 16 already spreads a frame's cost over 16 calls.
MAX_BATCH_JOBS = 16
# A replay's calls (the background lane) go one to a frame: a device's contact that
# arrives while a worker runs them waits for one replayed call, not for sixteen (live p99
# during a replay 62-88 ms with frames of 16, 31-32 ms with 1, in bench.replay; the
# replay loses about a quarter of its unbounded rate and nothing at its default rate).
MAX_BACKGROUND_BATCH_JOBS = 1
# A worker that has not said it is ready by then is not coming (a broken install).
WORKER_START_TIMEOUT_S = 30.0
# Why a worker could not start, as its first frame says it (stderr goes nowhere): enough
# for an exception's repr, and a bound on what the parent repeats in its error.
START_ERROR_CHARS = 1000
# The asyncio reader of a worker's answers (its `limit`): reading stops once twice this is
# buffered, a largest legal frame (MAX_FRAME_BYTES), so a worker that floods its pipe
# holds about that much of the parent's memory at most; readexactly needs no more.
ANSWER_BUFFER_BYTES = 4 * 1024 * 1024
# What a job frame holds besides its jobs and its (escaped) source: the two lengths, the
# sha and the batch's own keys and brackets; counted when the pool fills a batch, so a
# full batch still fits Limits.job_frame_bytes.
BATCH_HEAD_BYTES = 1024
# Between attempts to replace a worker: a failing start must not spin, nor shrink the
# pool for good.
RESPAWN_BACKOFF_S = (0.1, 0.5, 2.0)
# A worker asked to exit (EOF) that does not is killed.
WORKER_EXIT_WAIT_S = 2.0
# A worker whose pipe broke is given this long to die, so its exit status says why.
DEATH_WAIT_S = 0.5
# How much of a caller's unknown device type an answer repeats (the name is the
# caller's, of any length).
MAX_NAME_SHOWN = 128
# Probation slots (one worker at a time) are kept for at most this many versions: past
# it they are all dropped (costing a version on probation at most a second worker).
PROBATION_SLOTS_KEPT = 10_000
# Replacement windows kept before idle ones are forgotten: memory bounded by the versions
# churning now, not by every version ever seen.
CHURN_VERSIONS_KEPT = 1024
# Versions asked for by number and kept: a few replays or checks at a time, at most.
PINNED_VERSIONS = 8

DEFAULT_LIMITS = Limits()


def rlimits_for(limits: Limits) -> list[tuple[int, int, int]]:
    """(resource, soft, hard) for a worker process, applied once at its start.

    The CPU hard limit is the worker's whole budget (it cannot be raised again); the soft
    limit is re-armed before every call (see cpu_soft_limit_for).
    """
    memory = limits.memory_mb * 1024 * 1024
    cpu = limits.worker_cpu_budget_s
    return [
        (resource.RLIMIT_CPU, cpu, cpu),
        (resource.RLIMIT_AS, memory, memory),
        (resource.RLIMIT_FSIZE, 0, 0),
        (resource.RLIMIT_CORE, 0, 0),
        (resource.RLIMIT_NOFILE, limits.max_open_files, limits.max_open_files),
    ]


def cpu_soft_limit_for(limits: Limits, used_s: float, *, compiling: bool) -> int:
    """The RLIMIT_CPU soft limit for the next call of a worker that has used `used_s` so far.

    Soft < hard, so SIGXCPU (reported as a timeout) comes long before the SIGKILL of the
    hard limit; a worker near its hard budget is recycled by the pool.
    """
    budget_s = limits.deadline_s(compiling=compiling) + limits.cpu_margin_s
    return min(int(used_s + budget_s) + 1, limits.worker_cpu_budget_s - 1)
