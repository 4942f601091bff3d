"""The few libc calls hardening needs (prctl, unshare), through ctypes, errno kept."""

from __future__ import annotations

import ctypes
import errno
import functools
import os

PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_MODE_FILTER = 2
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000


@functools.cache
def libc() -> ctypes.CDLL:
    """The C library, with errno kept for each call."""
    # CDLL(None) is the symbol namespace of the running interpreter, which is linked against
    # libc: no search, no subprocess. find_library() runs ldconfig/gcc, so it is the fallback.
    own = ctypes.CDLL(None, use_errno=True)
    if hasattr(own, "prctl") and hasattr(own, "unshare"):
        return own
    from ctypes.util import find_library  # only here: it imports shutil and subprocess

    name = find_library("c")
    if name is None:
        raise OSError(errno.ENOSYS, "libc not found")
    return ctypes.CDLL(name, use_errno=True)


def prctl(option: int, arg2: int, arg3: ctypes.c_void_p | None = None) -> int | None:
    """prctl(option, arg2, arg3, 0, 0); None on success, else the errno."""
    try:
        c = libc()
    except OSError as exc:
        return exc.errno or errno.ENOSYS
    ctypes.set_errno(0)
    # prctl is variadic: pass every argument as an explicit unsigned long-sized C value.
    zero = ctypes.c_ulong(0)
    third = zero if arg3 is None else arg3
    if int(c.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), third, zero, zero)) == 0:
        return None
    return ctypes.get_errno()


def unshare(flags: int) -> int | None:
    """unshare(flags); None on success, else the errno."""
    try:
        c = libc()
    except OSError as exc:
        return exc.errno or errno.ENOSYS
    ctypes.set_errno(0)
    if int(c.unshare(ctypes.c_int(flags))) == 0:
        return None
    return ctypes.get_errno()


def strerror(err: int) -> str:
    """`EPERM (Operation not permitted)`: the name and the text of an errno."""
    return f"{errno.errorcode.get(err, str(err))} ({os.strerror(err)})"
