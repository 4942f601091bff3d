"""Defence-in-depth for a worker process: descriptors, network, rlimits, privileges, syscalls.

RestrictedPython is the first wall around parser code; this module is the second. A worker
calls `harden()` once, after its imports and before its first job, and the layers stay for
the life of the process (none of them can be undone from inside). The order matters:

1. close inherited descriptors, so nothing the parent leaked is reachable;
2. enter a fresh network namespace (loopback down, no interfaces), while still able to;
3. rlimits (mandatory: memory, CPU, no file writes, no core dumps, few descriptors);
4. no_new_privs (and not dumpable), which seccomp needs when unprivileged;
5. a seccomp filter: no network, no new processes, no signals to others, read-only opens.

Every layer but the rlimits degrades gracefully (a container without CAP_SYS_ADMIN, a
kernel without user namespaces, an unknown architecture): `HardeningReport.notes` says why.
`probe_layers()` runs the same in a throw-away child so the service can log what it gets.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import errno
import functools
import json
import os
import platform
import resource
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from preservarium_sandbox.limits import Limits, rlimits_for

__all__ = [
    "LAYERS",
    "HardeningReport",
    "apply_rlimits",
    "close_inherited_fds",
    "enter_network_namespace",
    "harden",
    "install_seccomp_filter",
    "make_not_dumpable",
    "probe_layers",
    "set_no_new_privs",
]

LAYERS: tuple[str, ...] = (
    "closed_fds", "network_namespace", "rlimits", "no_new_privs", "capabilities", "seccomp",
)  # fmt: skip
"""The layers in the order `harden()` applies them."""


@dataclass(frozen=True)
class HardeningReport:
    """Which hardening layers a worker ended up with, and why the missing ones are missing."""

    rlimits: bool
    no_new_privs: bool
    network_namespace: bool
    seccomp: bool
    closed_fds: bool
    capabilities: bool = False
    notes: tuple[str, ...] = ()

    def active_layers(self) -> list[str]:
        """Names of the active layers, in the order they are applied."""
        return [name for name in LAYERS if getattr(self, name)]

    def summary(self) -> str:
        """One log line: active layers, inactive layers and the reasons."""
        active = self.active_layers()
        inactive = [name for name in LAYERS if name not in active]
        line = f"hardening: active={','.join(active) or 'none'}"
        line += f" inactive={','.join(inactive) or 'none'}"
        if self.notes:
            # Notes come from OS error strings; keep the summary on one line whatever they hold.
            line += " notes=" + "; ".join(" ".join(note.split()) for note in self.notes)
        return line


# --- libc -------------------------------------------------------------------------------

PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_MODE_FILTER = 2
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000


@functools.cache
def _libc() -> ctypes.CDLL:
    # CDLL(None) is the symbol namespace of the running interpreter, which is linked against
    # libc: no search, no subprocess. find_library() runs ldconfig/gcc, so it is the fallback.
    libc = ctypes.CDLL(None, use_errno=True)
    if hasattr(libc, "prctl") and hasattr(libc, "unshare"):
        return libc
    name = ctypes.util.find_library("c")
    if name is None:
        raise OSError(errno.ENOSYS, "libc not found")
    return ctypes.CDLL(name, use_errno=True)


def _prctl(option: int, arg2: int, arg3: ctypes.c_void_p | None = None) -> int | None:
    """prctl(option, arg2, arg3, 0, 0); None on success, else the errno."""
    try:
        libc = _libc()
    except OSError as exc:
        return exc.errno or errno.ENOSYS
    ctypes.set_errno(0)
    # prctl is variadic: pass every argument as an explicit unsigned long-sized C value.
    zero = ctypes.c_ulong(0)
    third = zero if arg3 is None else arg3
    if int(libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), third, zero, zero)) == 0:
        return None
    return ctypes.get_errno()


def _unshare(flags: int) -> int | None:
    """unshare(flags); None on success, else the errno."""
    try:
        libc = _libc()
    except OSError as exc:
        return exc.errno or errno.ENOSYS
    ctypes.set_errno(0)
    if int(libc.unshare(ctypes.c_int(flags))) == 0:
        return None
    return ctypes.get_errno()


def _strerror(err: int) -> str:
    return f"{errno.errorcode.get(err, str(err))} ({os.strerror(err)})"


# --- descriptors ------------------------------------------------------------------------


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


# --- network namespace --------------------------------------------------------------------


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


def _try_network_namespace() -> str | None:
    """Enter a fresh network namespace; None on success, else why not."""
    before = _net_namespace_id()
    uid, gid = os.geteuid(), os.getegid()
    err = _unshare(CLONE_NEWNET)
    if err == errno.EPERM:
        # No CAP_SYS_ADMIN: an unprivileged user namespace grants it inside, for a network
        # namespace of our own. The kernel refuses this (EINVAL) in a multi-threaded process.
        err = _unshare(CLONE_NEWUSER | CLONE_NEWNET)
        if err is None:
            _map_own_ids(uid, gid)
        elif err == errno.EINVAL:
            return "network_namespace: user namespace refused (multi-threaded or chrooted?)"
    if err is not None:
        return f"network_namespace: unshare failed: {_strerror(err)}"
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
    return _try_network_namespace() is None


# --- rlimits ----------------------------------------------------------------------------


def apply_rlimits(limits: Limits) -> None:
    """Apply `rlimits_for(limits)`; raises OSError/ValueError if the kernel refuses one."""
    for which, soft, hard in rlimits_for(limits):
        resource.setrlimit(which, (soft, hard))


# --- no_new_privs -----------------------------------------------------------------------


def _try_no_new_privs() -> str | None:
    err = _prctl(PR_SET_NO_NEW_PRIVS, 1)
    if err is not None:
        return f"no_new_privs: prctl(PR_SET_NO_NEW_PRIVS) failed: {_strerror(err)}"
    # Not dumpable: no core file, /proc/<pid> of the worker owned by root, no ptrace attach.
    err = _prctl(PR_SET_DUMPABLE, 0)
    if err is not None:
        return f"no_new_privs: prctl(PR_SET_DUMPABLE) failed: {_strerror(err)}"
    return None


def set_no_new_privs() -> bool:
    """Set no_new_privs (execve can never grant privileges) and clear dumpable; True if both."""
    return _try_no_new_privs() is None


# --- seccomp ----------------------------------------------------------------------------

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_AARCH64 = 0xC00000B7
X32_SYSCALL_BIT = 0x40000000

SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000

# Classic BPF opcodes (linux/bpf_common.h).
_BPF_LD_W_ABS = 0x00 | 0x00 | 0x20  # BPF_LD | BPF_W | BPF_ABS
_BPF_JEQ_K = 0x05 | 0x10 | 0x00  # BPF_JMP | BPF_JEQ | BPF_K
_BPF_JGE_K = 0x05 | 0x30 | 0x00  # BPF_JMP | BPF_JGE | BPF_K
_BPF_JSET_K = 0x05 | 0x40 | 0x00  # BPF_JMP | BPF_JSET | BPF_K
_BPF_RET_K = 0x06 | 0x00  # BPF_RET | BPF_K

# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6].
_OFFSET_NR = 0
_OFFSET_ARCH = 4


def _offset_arg_low(index: int) -> int:
    # Both supported ABIs are little-endian (the arch word says so), so the low 32 bits of
    # args[i] come first. The kernel truncates int arguments (flags, pids) to those bits.
    return 16 + 8 * index


# Syscall numbers from the kernel's uapi headers: asm/unistd_64.h for x86_64 and
# asm-generic/unistd.h for aarch64. Numbers from 424 up are shared by every architecture.
_COMMON_NEW = {
    "pidfd_send_signal": 424,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "pidfd_open": 434,
    "clone3": 435,
    "openat2": 437,
    "pidfd_getfd": 438,
    "process_madvise": 440,
    "mount_setattr": 442,
    "fchmodat2": 452,
    "setxattrat": 463,
    "removexattrat": 466,
    "open_tree_attr": 467,
    "file_setattr": 469,
}

_SYSCALLS_X86_64 = {
    "open": 2,
    "socket": 41,
    "connect": 42,
    "accept": 43,
    "sendto": 44,
    "recvfrom": 45,
    "sendmsg": 46,
    "recvmsg": 47,
    "bind": 49,
    "listen": 50,
    "socketpair": 53,
    "clone": 56,
    "fork": 57,
    "vfork": 58,
    "execve": 59,
    "kill": 62,
    "truncate": 76,
    "rename": 82,
    "mkdir": 83,
    "rmdir": 84,
    "creat": 85,
    "link": 86,
    "unlink": 87,
    "symlink": 88,
    "chmod": 90,
    "fchmod": 91,
    "chown": 92,
    "fchown": 93,
    "lchown": 94,
    "ptrace": 101,
    "setuid": 105,
    "setgid": 106,
    "setreuid": 113,
    "setregid": 114,
    "setgroups": 116,
    "setresuid": 117,
    "setresgid": 119,
    "setfsuid": 122,
    "setfsgid": 123,
    "rt_sigqueueinfo": 129,
    "utime": 132,
    "mknod": 133,
    "uselib": 134,
    "personality": 135,
    "pivot_root": 155,
    "adjtimex": 159,
    "chroot": 161,
    "acct": 163,
    "settimeofday": 164,
    "mount": 165,
    "umount2": 166,
    "swapon": 167,
    "swapoff": 168,
    "reboot": 169,
    "sethostname": 170,
    "setdomainname": 171,
    "iopl": 172,
    "ioperm": 173,
    "init_module": 175,
    "delete_module": 176,
    "quotactl": 179,
    "setxattr": 188,
    "lsetxattr": 189,
    "fsetxattr": 190,
    "removexattr": 197,
    "lremovexattr": 198,
    "fremovexattr": 199,
    "tkill": 200,
    "clock_settime": 227,
    "tgkill": 234,
    "utimes": 235,
    "kexec_load": 246,
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    "openat": 257,
    "mkdirat": 258,
    "mknodat": 259,
    "fchownat": 260,
    "futimesat": 261,
    "unlinkat": 263,
    "renameat": 264,
    "linkat": 265,
    "symlinkat": 266,
    "fchmodat": 268,
    "unshare": 272,
    "utimensat": 280,
    "accept4": 288,
    "rt_tgsigqueueinfo": 297,
    "perf_event_open": 298,
    "recvmmsg": 299,
    "open_by_handle_at": 304,
    "clock_adjtime": 305,
    "sendmmsg": 307,
    "setns": 308,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "kcmp": 312,
    "finit_module": 313,
    "renameat2": 316,
    "kexec_file_load": 320,
    "bpf": 321,
    "execveat": 322,
    "userfaultfd": 323,
    **_COMMON_NEW,
}

# aarch64 has no legacy path syscalls (open, fork, unlink, ...): those names are skipped.
_SYSCALLS_AARCH64 = {
    "setxattr": 5,
    "lsetxattr": 6,
    "fsetxattr": 7,
    "removexattr": 14,
    "lremovexattr": 15,
    "fremovexattr": 16,
    "mknodat": 33,
    "mkdirat": 34,
    "unlinkat": 35,
    "symlinkat": 36,
    "linkat": 37,
    "renameat": 38,
    "umount2": 39,
    "mount": 40,
    "pivot_root": 41,
    "truncate": 45,
    "chroot": 51,
    "fchmod": 52,
    "fchmodat": 53,
    "fchownat": 54,
    "fchown": 55,
    "openat": 56,
    "quotactl": 60,
    "utimensat": 88,
    "acct": 89,
    "personality": 92,
    "unshare": 97,
    "kexec_load": 104,
    "init_module": 105,
    "delete_module": 106,
    "clock_settime": 112,
    "ptrace": 117,
    "kill": 129,
    "tkill": 130,
    "tgkill": 131,
    "rt_sigqueueinfo": 138,
    "reboot": 142,
    "setregid": 143,
    "setgid": 144,
    "setreuid": 145,
    "setuid": 146,
    "setresuid": 147,
    "setresgid": 149,
    "setfsuid": 151,
    "setfsgid": 152,
    "setgroups": 159,
    "sethostname": 161,
    "setdomainname": 162,
    "settimeofday": 170,
    "adjtimex": 171,
    "socket": 198,
    "socketpair": 199,
    "bind": 200,
    "listen": 201,
    "accept": 202,
    "connect": 203,
    "sendto": 206,
    "recvfrom": 207,
    "sendmsg": 211,
    "recvmsg": 212,
    "add_key": 217,
    "request_key": 218,
    "keyctl": 219,
    "clone": 220,
    "execve": 221,
    "swapon": 224,
    "swapoff": 225,
    "rt_tgsigqueueinfo": 240,
    "perf_event_open": 241,
    "accept4": 242,
    "recvmmsg": 243,
    "open_by_handle_at": 265,
    "clock_adjtime": 266,
    "setns": 268,
    "sendmmsg": 269,
    "process_vm_readv": 270,
    "process_vm_writev": 271,
    "kcmp": 272,
    "finit_module": 273,
    "renameat2": 276,
    "bpf": 280,
    "execveat": 281,
    "userfaultfd": 282,
    "kexec_file_load": 294,
    **_COMMON_NEW,
}

# platform.machine() -> (AUDIT_ARCH_* word, syscall table, x32 numbers to refuse).
_ARCHES: dict[str, tuple[int, dict[str, int], bool]] = {
    "x86_64": (AUDIT_ARCH_X86_64, _SYSCALLS_X86_64, True),
    "amd64": (AUDIT_ARCH_X86_64, _SYSCALLS_X86_64, True),
    "aarch64": (AUDIT_ARCH_AARCH64, _SYSCALLS_AARCH64, False),
    "arm64": (AUDIT_ARCH_AARCH64, _SYSCALLS_AARCH64, False),
}

# Refused outright with EPERM. Beyond the obvious (network, new processes, exec), this covers
# everything that touches other processes (pidfd_getfd could steal a descriptor of the parent
# when running as root), namespaces and mounts (including the new mount API), the kernel and
# the clock, and every path or metadata write, so the filesystem is read-only to the worker.
_DENIED = (
    # network: a worker talks only through its inherited pipes
    "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4",
    "sendto", "sendmsg", "sendmmsg", "recvfrom", "recvmsg", "recvmmsg",
    # new processes and programs; clone also means no threads (the worker has none)
    "execve", "execveat", "fork", "vfork", "clone", "clone3",
    # other processes
    "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "kcmp",
    "pidfd_open", "pidfd_getfd", "pidfd_send_signal", "rt_sigqueueinfo", "rt_tgsigqueueinfo",
    # namespaces and mounts
    "mount", "umount2", "unshare", "setns", "chroot", "pivot_root", "open_tree",
    "open_tree_attr", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    # the kernel, the machine and the clock
    "reboot", "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "bpf", "perf_event_open", "keyctl", "add_key", "request_key", "personality", "swapon",
    "swapoff", "acct", "sethostname", "setdomainname", "iopl", "ioperm", "quotactl", "uselib",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    # filesystem writes (opens for writing are checked by flags below)
    "openat2", "creat", "open_by_handle_at", "mknod", "mknodat", "link", "linkat", "symlink",
    "symlinkat", "unlink", "unlinkat", "rename", "renameat", "renameat2", "mkdir", "mkdirat",
    "rmdir", "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown",
    "fchownat", "truncate", "setxattr", "lsetxattr", "fsetxattr", "setxattrat", "removexattr",
    "lremovexattr", "fremovexattr", "removexattrat", "utime", "utimes", "utimensat",
    "futimesat", "file_setattr",
    # credentials
    "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setfsuid",
    "setfsgid", "setgroups",
    # kernel attack surface with no use here
    "io_uring_setup", "io_uring_enter", "io_uring_register", "userfaultfd",
)  # fmt: skip

# open(path, flags) and openat(dirfd, path, flags): refused when flags ask for anything but
# reading. (O_TMPFILE requires O_WRONLY or O_RDWR, so it is covered too.) openat2 passes its
# flags in a struct that seccomp cannot read, so it is refused outright above.
_OPEN_FLAGS_ARG = {"open": 1, "openat": 2}
_WRITE_OPEN_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

# kill(pid), tkill(tid), tgkill(tgid, tid): allowed only aimed at the worker itself. glibc's
# raise() is tgkill(getpid(), gettid()), used by signal.raise_signal(), os.abort() and
# faulthandler's re-raise of a fatal signal; signalling oneself gives nothing away. Anything
# else (the parent, pid 0 = the process group, -1 = everyone) gets EPERM. With clone refused
# the worker stays single-threaded, so its only tid is its pid.
_SELF_ONLY_ARG = {"kill": 0, "tkill": 0, "tgkill": 0}

_Insn = tuple[int, int, int, int]


def _stmt(code: int, k: int) -> _Insn:
    return (code, 0, 0, k)


def _jump(code: int, k: int, jt: int, jf: int) -> _Insn:
    return (code, jt, jf, k)


def _seccomp_program(machine: str, own_pid: int) -> list[_Insn] | None:
    """The filter for `machine` as (code, jt, jf, k) tuples; None for an unknown arch.

    Each rule is a short forward block, so no jump offset ever exceeds a few instructions
    (classic BPF offsets are 8-bit).
    """
    arch = _ARCHES.get(machine.lower())
    if arch is None:
        return None
    audit_arch, table, refuse_x32 = arch
    deny = _stmt(_BPF_RET_K, SECCOMP_RET_ERRNO | errno.EPERM)
    allow = _stmt(_BPF_RET_K, SECCOMP_RET_ALLOW)
    program = [
        # A syscall made through another ABI (i386 int 0x80, AArch32) has other numbers:
        # kill rather than misread it.
        _stmt(_BPF_LD_W_ABS, _OFFSET_ARCH),
        _jump(_BPF_JEQ_K, audit_arch, 1, 0),
        _stmt(_BPF_RET_K, SECCOMP_RET_KILL_PROCESS),
        _stmt(_BPF_LD_W_ABS, _OFFSET_NR),
    ]
    if refuse_x32:
        # x32 syscalls share AUDIT_ARCH_X86_64 but carry bit 30: refuse the whole ABI so no
        # number below can be reached under another name.
        program += [_jump(_BPF_JGE_K, X32_SYSCALL_BIT, 0, 1), deny]
    for name in _DENIED:
        if name in table:
            program += [_jump(_BPF_JEQ_K, table[name], 0, 1), deny]
    for name, index in _OPEN_FLAGS_ARG.items():
        if name in table:
            program += [
                _jump(_BPF_JEQ_K, table[name], 0, 4),
                _stmt(_BPF_LD_W_ABS, _offset_arg_low(index)),
                _jump(_BPF_JSET_K, _WRITE_OPEN_FLAGS, 0, 1),
                deny,
                allow,
            ]
    for name, index in _SELF_ONLY_ARG.items():
        if name in table:
            program += [
                _jump(_BPF_JEQ_K, table[name], 0, 4),
                _stmt(_BPF_LD_W_ABS, _offset_arg_low(index)),
                _jump(_BPF_JEQ_K, own_pid & 0xFFFFFFFF, 0, 1),
                allow,
                deny,
            ]
    program.append(allow)
    return program


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def _try_seccomp() -> str | None:
    machine = platform.machine()
    program = _seccomp_program(machine, os.getpid())
    if program is None:
        return f"seccomp: no syscall table for architecture {machine!r}"
    filters = (_SockFilter * len(program))(*(_SockFilter(*insn) for insn in program))
    fprog = _SockFprog(len(program), ctypes.cast(filters, ctypes.POINTER(_SockFilter)))
    # The kernel copies the program during the call; `filters` only has to outlive it.
    err = _prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.c_void_p(ctypes.addressof(fprog)))
    if err is not None:
        return f"seccomp: prctl(PR_SET_SECCOMP) failed: {_strerror(err)}"
    return None


def install_seccomp_filter() -> bool:
    """Install the worker's seccomp filter on this process; True if it is in force.

    Without CAP_SYS_ADMIN the kernel requires no_new_privs first (`set_no_new_privs`). On an
    architecture without a syscall table here nothing is installed and False is returned.
    The filter is permanent and inherited; never call this in a process that must go on
    opening sockets, starting processes or writing files.
    """
    return _try_seccomp() is None


# --- all together -------------------------------------------------------------------------


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


def _try_drop_capabilities() -> str | None:
    """Empty the bounding, effective, permitted and inheritable sets; None on success.

    A worker started as root keeps uid 0 but can no longer bypass file permissions,
    ptrace or read another process's memory or environment (CAP_SYS_PTRACE, DAC_*).
    """
    for capability in range(_last_capability() + 1):
        err = _prctl(PR_CAPBSET_DROP, capability)
        if err is not None and err != errno.EPERM and err != errno.EINVAL:
            return f"capabilities: PR_CAPBSET_DROP failed: {_strerror(err)}"
    try:
        libc = _libc()
    except OSError as exc:
        return f"capabilities: no libc: {exc}"
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        return f"capabilities: capset failed: {_strerror(ctypes.get_errno())}"
    return None


def make_not_dumpable() -> bool:
    """Clear this process's dumpable flag: same-uid processes (a compromised worker) can
    then no longer read its /proc files, its environment (secrets) among them."""
    return _prctl(PR_SET_DUMPABLE, 0) is None


def harden(limits: Limits) -> HardeningReport:
    """Apply every layer to this process, in order; report which ones took.

    A layer the kernel refuses is recorded in the notes, except the rlimits: without them a
    worker must not run, so their failure raises RuntimeError.
    """
    notes: list[str] = []

    closed_fds = True
    try:
        close_inherited_fds()
    except OSError as exc:
        closed_fds = False
        notes.append(f"closed_fds: {exc}")

    # Before the rlimits and seccomp: unshare is refused by the filter, and the fallback
    # through a user namespace writes /proc/self/uid_map.
    reason = _try_network_namespace()
    if reason is not None:
        notes.append(reason)
    network_namespace = reason is None

    try:
        apply_rlimits(limits)
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"cannot apply the worker rlimits: {exc}") from exc

    reason = _try_no_new_privs()
    if reason is not None:
        notes.append(reason)
    no_new_privs = reason is None

    reason = _try_drop_capabilities()
    if reason is not None:
        notes.append(reason)
    capabilities = reason is None

    reason = _try_seccomp()
    if reason is not None:
        notes.append(reason)
    seccomp = reason is None

    return HardeningReport(
        rlimits=True,
        no_new_privs=no_new_privs,
        network_namespace=network_namespace,
        seccomp=seccomp,
        closed_fds=closed_fds,
        capabilities=capabilities,
        notes=tuple(notes),
    )


_PROBE_SCRIPT = """\
import dataclasses, json, sys
from preservarium_sandbox.limits import Limits
from preservarium_sandbox.worker.hardening import harden
report = harden(Limits(**json.loads(sys.argv[1])))
sys.stdout.write(json.dumps(dataclasses.asdict(report)))
sys.stdout.flush()
"""


def _report_from_mapping(data: Mapping[str, object]) -> HardeningReport:
    flags = {name: data.get(name) for name in LAYERS}
    notes = data.get("notes")
    if not all(isinstance(value, bool) for value in flags.values()) or not (
        isinstance(notes, list) and all(isinstance(note, str) for note in notes)
    ):
        raise ValueError(f"not a hardening report: {data!r}")
    return HardeningReport(
        rlimits=flags["rlimits"] is True,
        no_new_privs=flags["no_new_privs"] is True,
        network_namespace=flags["network_namespace"] is True,
        seccomp=flags["seccomp"] is True,
        closed_fds=flags["closed_fds"] is True,
        capabilities=flags["capabilities"] is True,
        notes=tuple(notes),
    )


def probe_layers(limits: Limits, *, timeout_s: float = 10.0) -> HardeningReport:
    """Run `harden(limits)` in a short-lived child process and return its report.

    For the service to log at start which layers its workers will get. The child is a fresh
    interpreter (not a fork: the service is threaded) started like a worker: isolated mode,
    empty environment, own session. Raises RuntimeError if the child fails, as a worker would.
    """
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-c", _PROBE_SCRIPT, json.dumps(dataclasses.asdict(limits))],
            env={},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            start_new_session=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"hardening probe could not run: {exc}") from exc
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:]
        raise RuntimeError(f"hardening probe exited with {done.returncode}: {' '.join(tail)}")
    try:
        data = json.loads(done.stdout)
        if not isinstance(data, dict):
            raise ValueError(f"not a JSON object: {data!r}")
        return _report_from_mapping(data)
    except ValueError as exc:
        raise RuntimeError(f"hardening probe answered garbage: {exc}") from exc
