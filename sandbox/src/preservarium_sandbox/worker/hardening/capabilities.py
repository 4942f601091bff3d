"""Privileges a worker gives up: no_new_privs, dumpable, and every capability."""

from __future__ import annotations

import ctypes
import errno

from preservarium_sandbox.worker.hardening.libc import (
    PR_SET_DUMPABLE,
    PR_SET_NO_NEW_PRIVS,
    libc,
    prctl,
    strerror,
)


def try_no_new_privs() -> str | None:
    err = prctl(PR_SET_NO_NEW_PRIVS, 1)
    if err is not None:
        return f"no_new_privs: prctl(PR_SET_NO_NEW_PRIVS) failed: {strerror(err)}"
    # Not dumpable: no core file, /proc/<pid> of the worker owned by root, no ptrace attach.
    err = prctl(PR_SET_DUMPABLE, 0)
    if err is not None:
        return f"no_new_privs: prctl(PR_SET_DUMPABLE) failed: {strerror(err)}"
    return None


def set_no_new_privs() -> bool:
    """Set no_new_privs (execve can never grant privileges) and clear dumpable; True if both."""
    return try_no_new_privs() is None


PR_CAPBSET_DROP = 24
_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


def _last_capability() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap", "rb") as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return 63


def try_drop_capabilities() -> str | None:
    """Empty the bounding, effective, permitted and inheritable sets; None on success.

    A worker started as root keeps uid 0 but can no longer bypass file permissions,
    ptrace or read another process's memory or environment (CAP_SYS_PTRACE, DAC_*).
    """
    for capability in range(_last_capability() + 1):
        err = prctl(PR_CAPBSET_DROP, capability)
        if err is not None and err != errno.EPERM and err != errno.EINVAL:
            return f"capabilities: PR_CAPBSET_DROP failed: {strerror(err)}"
    try:
        c = libc()
    except OSError as exc:
        return f"capabilities: no libc: {exc}"
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if c.capset(ctypes.byref(header), data) != 0:
        return f"capabilities: capset failed: {strerror(ctypes.get_errno())}"
    return None


def make_not_dumpable() -> bool:
    """Clear this process's dumpable flag: same-uid processes (a compromised worker) can
    then no longer read its /proc files, its environment (secrets) among them."""
    return prctl(PR_SET_DUMPABLE, 0) is None
