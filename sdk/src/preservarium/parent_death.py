"""Children that die with their parent, however the parent ends.

`preservarium up` stops its services itself when it can; when it cannot (SIGKILL, a
crash), Linux's PR_SET_PDEATHSIG still signals each child as `up` dies, so no broker
or sandbox is left holding its port. Elsewhere this is a no-op.

The signal is arranged by a tiny launcher that then execs the real program (the
setting survives execve), not by a `preexec_fn`: code run between fork and exec in a
child of a threaded process (gRPC and asyncio run threads) can deadlock or crash, and
did (a segfault, an abort) under load.
"""

from __future__ import annotations

import os
import signal
import sys

# argv: signal number, the parent's pid, then the program and its arguments.
LAUNCHER = """\
import ctypes, os, sys
signum, parent = int(sys.argv[1]), int(sys.argv[2])
ctypes.CDLL(None, use_errno=True).prctl(1, signum, 0, 0, 0)  # PR_SET_PDEATHSIG
if os.getppid() != parent:  # the parent died before prctl: nobody would signal us
    os.kill(os.getpid(), signum)
os.execvp(sys.argv[3], sys.argv[3:])
"""


def dying_with_parent(argv: list[str], signum: signal.Signals = signal.SIGTERM) -> list[str]:
    """`argv` run so that it receives `signum` when this process dies (as is where the
    system has no such thing).

    Linux signals the child when the *thread* that started it ends: start children from
    the thread that lives as long as the process (the one running asyncio.run).
    """
    if not sys.platform.startswith("linux"):
        return argv
    guard = [sys.executable, "-I", "-S", "-c", LAUNCHER, str(int(signum)), str(os.getpid())]
    return [*guard, *argv]
