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
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from typing import TYPE_CHECKING

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

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """The limits the operator configured."""
        return cls(timeout_ms=settings.sandbox_timeout_ms, memory_mb=settings.sandbox_memory_mb)

    def deadline_s(self, *, compiling: bool) -> float:
        """Seconds the parent waits for an answer before it kills the worker."""
        budget = self.timeout_ms + (self.compile_timeout_ms if compiling else 0)
        return (budget + self.kill_margin_ms) / 1000


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
