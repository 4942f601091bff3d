"""Children that die with their parent, however the parent ends.

`preservarium up` stops its services itself when it can; when it cannot (SIGKILL, a
crash), Linux's PR_SET_PDEATHSIG still signals each child as `up` dies, so no broker
or sandbox is left holding its port. Elsewhere this is a no-op.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def die_with_parent(signum: signal.Signals = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` that has the child receive `signum` when this process dies (None
    where the system has no such thing).

    Linux signals the child when the *thread* that started it ends: start children from
    the thread that lives as long as the process (the one running asyncio.run).
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded here: the child only calls into it
    parent = os.getpid()

    def arrange() -> None:
        libc.prctl(ctypes.c_int(PR_SET_PDEATHSIG), ctypes.c_ulong(signum), 0, 0, 0)
        # The parent may have died between fork and prctl: then nobody would signal us.
        if os.getppid() != parent:
            os.kill(os.getpid(), signum)

    return arrange
