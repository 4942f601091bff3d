"""The worker's seccomp filter: a classic-BPF program refusing network, new processes,
signals to others and every write to the filesystem, per architecture."""

from __future__ import annotations

import ctypes
import errno
import os
import platform

from preservarium_sandbox.worker.hardening.libc import (
    PR_SET_SECCOMP,
    SECCOMP_MODE_FILTER,
    prctl,
    strerror,
)

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


def try_seccomp() -> str | None:
    machine = platform.machine()
    program = _seccomp_program(machine, os.getpid())
    if program is None:
        return f"seccomp: no syscall table for architecture {machine!r}"
    filters = (_SockFilter * len(program))(*(_SockFilter(*insn) for insn in program))
    fprog = _SockFprog(len(program), ctypes.cast(filters, ctypes.POINTER(_SockFilter)))
    # The kernel copies the program during the call; `filters` only has to outlive it.
    err = prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.c_void_p(ctypes.addressof(fprog)))
    if err is not None:
        return f"seccomp: prctl(PR_SET_SECCOMP) failed: {strerror(err)}"
    return None


def install_seccomp_filter() -> bool:
    """Install the worker's seccomp filter on this process; True if it is in force.

    Without CAP_SYS_ADMIN the kernel requires no_new_privs first (`set_no_new_privs`). On an
    architecture without a syscall table here nothing is installed and False is returned.
    The filter is permanent and inherited; never call this in a process that must go on
    opening sockets, starting processes or writing files.
    """
    return try_seccomp() is None
