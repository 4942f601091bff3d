"""A fresh, empty network namespace for a worker (through a user namespace when
unprivileged): even a socket that slipped past seccomp reaches nothing."""

from __future__ import annotations

import contextlib
import errno
import os

from preservarium_sandbox.worker.hardening.libc import (
    CLONE_NEWNET,
    CLONE_NEWUSER,
    strerror,
    unshare,
)


def _net_namespace_id() -> str | None:
    try:
        return os.readlink("/proc/self/ns/net")
    except OSError:
        return None


def _write_proc_file(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _map_own_ids(uid: int, gid: int) -> None:
    """Map our own uid/gid into the fresh user namespace (else they read as 65534).

    Best effort: the network namespace is what matters, and an unmapped id only changes
    what getuid() reports. setgroups must be denied before an unprivileged gid_map write.
    """
    try:
        _write_proc_file("/proc/self/uid_map", f"{uid} {uid} 1\n")
        with contextlib.suppress(FileNotFoundError):  # no setgroups file before Linux 3.19
            _write_proc_file("/proc/self/setgroups", "deny\n")
        _write_proc_file("/proc/self/gid_map", f"{gid} {gid} 1\n")
    except OSError:
        pass


def try_network_namespace() -> str | None:
    """Enter a fresh network namespace; None on success, else why not."""
    before = _net_namespace_id()
    uid, gid = os.geteuid(), os.getegid()
    err = unshare(CLONE_NEWNET)
    if err == errno.EPERM:
        # No CAP_SYS_ADMIN: an unprivileged user namespace grants it inside, for a network
        # namespace of our own. The kernel refuses this (EINVAL) in a multi-threaded process.
        err = unshare(CLONE_NEWUSER | CLONE_NEWNET)
        if err is None:
            _map_own_ids(uid, gid)
        elif err == errno.EINVAL:
            return "network_namespace: user namespace refused (multi-threaded or chrooted?)"
    if err is not None:
        return f"network_namespace: unshare failed: {strerror(err)}"
    after = _net_namespace_id()
    if before is not None and after == before:
        return "network_namespace: unshare succeeded but the namespace did not change"
    # Without /proc nothing can be compared; unshare() returning 0 is the kernel's word.
    return None


def enter_network_namespace() -> bool:
    """Move this process into a new, empty network namespace; True if it now is in one.

    Tries unshare(CLONE_NEWNET), then unshare(CLONE_NEWUSER | CLONE_NEWNET) when not
    privileged (must be called while single-threaded). Afterwards only a downed loopback
    exists, so even a socket that slipped past seccomp reaches nothing.
    """
    return try_network_namespace() is None
