"""Closing every descriptor a worker inherited, so nothing the parent leaked is reachable."""

from __future__ import annotations

import os
import resource
from collections.abc import Iterable


def _fd_ceiling() -> int:
    """One past the highest descriptor that may be open."""
    try:
        # Exact when /proc is mounted (the listing's own descriptor is included; harmless).
        return max(int(name) for name in os.listdir("/proc/self/fd")) + 1
    except (OSError, ValueError):
        pass
    # Without /proc, bound by the limits; capped because os.closerange() falls back to one
    # close() per number on kernels without close_range().
    bound = max(os.sysconf("SC_OPEN_MAX"), 1024)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY:
        bound = max(bound, hard)
    return min(bound, 1 << 20)


def close_inherited_fds(keep: Iterable[int] = (0, 1, 2)) -> None:
    """Close every descriptor except those in `keep` (by default the job pipes and stderr)."""
    low = 0
    for fd in sorted({fd for fd in keep if fd >= 0}):
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, max(_fd_ceiling(), low))
