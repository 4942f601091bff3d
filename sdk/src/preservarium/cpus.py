"""How many CPUs this process may use: its affinity, capped by a cgroup CPU quota.

`os.cpu_count()` counts the host's CPUs; a container limited with `cpus: 2` (cgroup v2
`cpu.max`) or pinned with `cpuset` sees them all but may use only a few. A service that
starts one process per CPU must count what it may actually use, or it oversubscribes.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def quota_cpus(cpu_max: str) -> int | None:
    """The CPUs a cgroup v2 `cpu.max` line allows (`QUOTA PERIOD`, or `max PERIOD`): the
    quota rounded up, at least 1; None when there is no quota or the line is unreadable."""
    parts = cpu_max.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    if quota <= 0 or period <= 0:
        return None
    return max(1, math.ceil(quota / period))


def available_cpus(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """The CPUs this process may run on, at least 1."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        count = os.cpu_count() or 1
    try:
        quota = quota_cpus(cpu_max.read_text())
    except OSError:
        quota = None
    return max(1, min(count, quota) if quota is not None else count)
