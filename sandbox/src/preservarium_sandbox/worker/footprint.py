"""The worker's memory after a call, against what it had before its first: grown = recycle.

Nothing a call makes may outlive it; engine.residue drops what the vetted modules cache,
and this is the check for whatever nobody has thought of yet. A worker whose address
space stays more than `Limits.max_residue_mb` over its starting size is replaced (the
answer says `recycle`), so memory pinned by one parser never shrinks another parser's
RLIMIT_AS headroom. The measure is the virtual size, the quantity RLIMIT_AS bounds, read
from /proc/self/statm through a descriptor opened once: one pread per call, a few
microseconds.

glibc keeps freed memory for reuse (and raises its mmap threshold after each large
free), which would read as growth after a legitimate large call: fixed thresholds make it
hand freed blocks back to the system instead.
"""

from __future__ import annotations

import ctypes
import os

STATM = "/proc/self/statm"
# mallopt parameters (malloc.h) and the values the worker uses.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 256 * 1024
TRIM_THRESHOLD_BYTES = 1024 * 1024


def return_freed_memory() -> bool:
    """Fixed glibc thresholds: large blocks are mapped and unmapped, a freed top trimmed.

    False where the C library has no mallopt (not glibc): the check below still holds,
    it may only recycle a little more often.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mapped = mallopt(ctypes.c_int(M_MMAP_THRESHOLD), ctypes.c_int(MMAP_THRESHOLD_BYTES))
    trimmed = mallopt(ctypes.c_int(M_TRIM_THRESHOLD), ctypes.c_int(TRIM_THRESHOLD_BYTES))
    return bool(mapped and trimmed)


class Footprint:
    """The worker's virtual size, compared after each call with its size at the start."""

    def __init__(self, *, slack_mb: int) -> None:
        self._fd = os.open(STATM, os.O_RDONLY | os.O_CLOEXEC)
        self._slack_pages = slack_mb * 1024 * 1024 // os.sysconf("SC_PAGE_SIZE")
        self.baseline_pages = self.pages()

    def pages(self) -> int:
        """The virtual size now, in pages (the first field of /proc/self/statm)."""
        text = os.pread(self._fd, 64, 0)
        return int(text[: text.index(b" ")])

    def grown(self) -> bool:
        """True when the last call left the worker over its baseline plus the slack."""
        return self.pages() > self.baseline_pages + self._slack_pages
