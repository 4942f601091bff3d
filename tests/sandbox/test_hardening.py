"""The worker hardening layers.

Anything that hardens runs in a throw-away child interpreter (isolated mode, empty
environment, own session, like a worker): the layers are permanent and would cripple pytest.
The seccomp program itself is also checked in-process with a tiny classic-BPF interpreter,
for both architectures (only the running one can be tried for real).
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from preservarium_sandbox.worker.hardening import LAYERS, HardeningReport
from preservarium_sandbox.worker.hardening.seccomp import (
    _DENIED,
    _SYSCALLS_AARCH64,
    _SYSCALLS_X86_64,
    AUDIT_ARCH_AARCH64,
    AUDIT_ARCH_X86_64,
    SECCOMP_RET_ALLOW,
    SECCOMP_RET_ERRNO,
    SECCOMP_RET_KILL_PROCESS,
    X32_SYSCALL_BIT,
    _seccomp_program,
)

DENY = SECCOMP_RET_ERRNO | errno.EPERM


def run_child(script: str, *args: str, **kwargs: Any) -> Any:
    """Run `script` like a worker is run; its last stdout line is the JSON verdict."""
    done = subprocess.run(
        [sys.executable, "-I", "-c", script, *args],
        env={},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        start_new_session=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    lines = done.stdout.decode().splitlines()
    assert lines, f"no output; stderr: {done.stderr.decode(errors='replace')}"
    return json.loads(lines[-1])


ATTACKS = r"""
import json, os, resource, signal, socket, subprocess, sys, threading, time
from preservarium_sandbox.limits import Limits, cpu_soft_limit_for
from preservarium_sandbox.worker.hardening import harden

port, target, victim = int(sys.argv[1]), sys.argv[2], sys.argv[3]
limits = Limits(memory_mb=256)
report = harden(limits)
verdict = {"active": report.active_layers(), "notes": list(report.notes)}


def attempt(name, action):
    try:
        verdict[name] = {"ok": True, "value": action()}
    except Exception as exc:
        verdict[name] = {"ok": False, "error": type(exc).__name__,
                         "errno": getattr(exc, "errno", None)}


def tcp():
    socket.create_connection(("127.0.0.1", port), timeout=1).close()


def fork():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def write_file():
    with open(target, "w") as handle:
        handle.write("escaped")


def read_hostname():
    with open("/etc/hostname") as handle:
        return handle.read()


def re_arm_cpu():
    used = resource.getrusage(resource.RUSAGE_SELF).ru_utime
    soft = cpu_soft_limit_for(limits, used, compiling=False)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, limits.worker_cpu_budget_s))
    return list(resource.getrlimit(resource.RLIMIT_CPU)) == [soft, limits.worker_cpu_budget_s]


def wait_for_signal(signum, fire):
    fired = []
    signal.signal(signum, lambda *_: fired.append(signum))
    fire()
    deadline = time.monotonic() + 2
    while not fired and time.monotonic() < deadline:
        time.sleep(0.001)
    return bool(fired)


attempt("tcp_loopback", tcp)
attempt("socket", lambda: socket.socket().close())
attempt("fork", fork)
attempt("subprocess", lambda: subprocess.run(["/bin/true"], check=True).returncode)
attempt("execv", lambda: os.execv("/bin/true", ["true"]))
attempt("thread", lambda: threading.Thread(target=lambda: None).start())
attempt("write_file", write_file)
attempt("unlink", lambda: os.unlink(victim))
attempt("mkdir", lambda: os.mkdir(target + ".d"))
attempt("read_hostname", read_hostname)
attempt("allocate_1gib", lambda: len(bytearray(1 << 30)))
attempt("kill_parent", lambda: os.kill(os.getppid(), 0))
attempt("re_arm_cpu", re_arm_cpu)
attempt("alarm", lambda: wait_for_signal(
    signal.SIGALRM, lambda: signal.setitimer(signal.ITIMER_REAL, 0.01)))
attempt("signal_self", lambda: wait_for_signal(
    signal.SIGUSR1, lambda: os.kill(os.getpid(), signal.SIGUSR1)))
print(json.dumps(verdict), flush=True)
"""


def test_hardened_worker_cannot_escape_but_can_work(tmp_path: Path) -> None:
    target = tmp_path / "written"
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        verdict = run_child(ATTACKS, str(port), str(target), str(victim))

    def refused(name: str, error: str = "PermissionError") -> None:
        assert verdict[name]["ok"] is False, (name, verdict[name])
        assert verdict[name]["error"] == error, (name, verdict[name])

    assert verdict["active"] == list(LAYERS), verdict["notes"]
    refused("tcp_loopback")
    refused("socket")
    refused("fork")
    refused("subprocess")
    refused("execv")
    refused("thread", "RuntimeError")  # clone is refused: no threads either
    refused("write_file")
    refused("unlink")
    refused("mkdir")
    refused("allocate_1gib", "MemoryError")
    refused("kill_parent")
    for name in ("tcp_loopback", "socket", "fork", "execv", "write_file", "kill_parent"):
        assert verdict[name]["errno"] == errno.EPERM, (name, verdict[name])
    assert not target.exists()
    assert not (tmp_path / "written.d").exists()
    assert victim.read_text() == "keep me"

    assert verdict["read_hostname"] == {"ok": True, "value": Path("/etc/hostname").read_text()}
    assert verdict["re_arm_cpu"] == {"ok": True, "value": True}
    assert verdict["alarm"] == {"ok": True, "value": True}
    assert verdict["signal_self"] == {"ok": True, "value": True}


EVERY_LAYER = r"""
import dataclasses, json
from preservarium_sandbox.limits import Limits
from preservarium_sandbox.worker.hardening import harden

print(json.dumps(dataclasses.asdict(harden(Limits(memory_mb=256)))))
"""


def test_a_worker_gets_every_layer_here() -> None:
    verdict = run_child(EVERY_LAYER)
    report = HardeningReport(**{**verdict, "notes": tuple(verdict["notes"])})
    assert report.rlimits
    assert report.no_new_privs
    assert report.seccomp
    assert report.network_namespace
    assert report.closed_fds
    assert report.capabilities
    assert report.notes == ()
    assert report.active_layers() == list(LAYERS)
    assert "inactive=none" in report.summary()


NETNS_ONLY = r"""
import json, socket, sys
from preservarium_sandbox.worker.hardening import enter_network_namespace

port = int(sys.argv[1])
socket.create_connection(("127.0.0.1", port), timeout=1).close()
entered = enter_network_namespace()
try:
    socket.create_connection(("127.0.0.1", port), timeout=1).close()
    after = "connected"
except OSError as exc:
    after = type(exc).__name__
print(json.dumps({"entered": entered, "after": after}))
"""


def test_network_namespace_alone_cuts_loopback() -> None:
    # No seccomp here: the socket is created, and the empty namespace is what stops it.
    with socket.create_server(("127.0.0.1", 0)) as server:
        verdict = run_child(NETNS_ONLY, str(server.getsockname()[1]))
    assert verdict["entered"] is True
    assert verdict["after"] != "connected"


FD_LEAK = r"""
import json, os
from preservarium_sandbox.worker.hardening import close_inherited_fds


def is_open(fd):
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


leaked = [os.open("/etc/hostname", os.O_RDONLY) for _ in range(3)]
high = os.dup2(leaked[0], 200)
close_inherited_fds(keep=(0, 1, 2, leaked[1]))
print(json.dumps({fd: is_open(fd) for fd in [0, 1, 2, *leaked, high]}))
"""


def test_close_inherited_fds_keeps_only_the_kept() -> None:
    states = run_child(FD_LEAK)
    assert list(states.values()) == [True, True, True, False, True, False, False], states


MANDATORY_RLIMITS = r"""
import json
from preservarium_sandbox.limits import Limits
from preservarium_sandbox.worker.hardening import harden

try:
    # Beyond fs.nr_open: refused even to root.
    harden(Limits(max_open_files=2**31 - 1))
    outcome = "hardened"
except RuntimeError as exc:
    outcome = "RuntimeError"
print(json.dumps(outcome))
"""


def test_rlimits_are_mandatory() -> None:
    assert run_child(MANDATORY_RLIMITS) == "RuntimeError"


UNKNOWN_ARCH = r"""
import json, platform
from preservarium_sandbox.worker import hardening

platform.machine = lambda: "sparc64"
installed = hardening.install_seccomp_filter()
with open("/proc/self/status") as status:
    mode = [line.split()[1] for line in status if line.startswith("Seccomp:")]
print(json.dumps({"installed": installed, "mode": mode}))
"""


def test_unknown_architecture_installs_nothing() -> None:
    assert run_child(UNKNOWN_ARCH) == {"installed": False, "mode": ["0"]}


UNPRIVILEGED = r"""
import dataclasses, json, os
from preservarium_sandbox.limits import Limits
from preservarium_sandbox.worker.hardening import harden

if os.geteuid() == 0:
    # Like a worker started as an ordinary user: leaving uid 0 clears every capability.
    os.setgroups([])
    os.setresgid(65534, 65534, 65534)
    os.setresuid(65534, 65534, 65534)
with open("/proc/self/status") as status:
    caps = [line.split()[1] for line in status if line.startswith("CapEff:")]
report = harden(Limits())
print(json.dumps({"caps": caps, **dataclasses.asdict(report)}))
"""


def test_unprivileged_worker_degrades_gracefully() -> None:
    report = run_child(UNPRIVILEGED)
    assert report["caps"] == ["0000000000000000"]
    assert report["rlimits"] and report["closed_fds"]
    # Seccomp without CAP_SYS_ADMIN needs no_new_privs first: both must work unprivileged.
    assert report["no_new_privs"] and report["seccomp"], report["notes"]
    # Needs unprivileged user namespaces, which some kernels and containers refuse.
    if not report["network_namespace"]:
        assert any(note.startswith("network_namespace:") for note in report["notes"])


def test_report_summary_is_one_line() -> None:
    report = HardeningReport(
        rlimits=True,
        no_new_privs=True,
        network_namespace=False,
        seccomp=False,
        closed_fds=True,
        capabilities=True,
        notes=("network_namespace: unshare failed:\nEPERM", "seccomp: no table"),
    )
    assert report.active_layers() == ["closed_fds", "rlimits", "no_new_privs", "capabilities"]
    summary = report.summary()
    assert "\n" not in summary
    assert "inactive=network_namespace,seccomp" in summary
    assert "unshare failed: EPERM" in summary
    assert json.loads(json.dumps(dataclasses.asdict(report)))["seccomp"] is False


# --- the seccomp program, interpreted ---------------------------------------------------


def run_filter(program: list[tuple[int, int, int, int]], nr: int, arch: int, *args: int) -> int:
    """Evaluate a classic-BPF seccomp program on one seccomp_data; the action it returns."""
    padded = [*args, *[0] * (6 - len(args))]
    data = struct.pack("<IIQ6Q", nr & 0xFFFFFFFF, arch, 0, *(a & (2**64 - 1) for a in padded))
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = program[pc]
        if code == 0x20:  # ld [k]
            (acc,) = struct.unpack_from("<I", data, k)
            pc += 1
            continue
        if code == 0x06:  # ret k
            return k
        taken = {0x15: acc == k, 0x35: acc >= k, 0x45: bool(acc & k)}[code]
        pc += 1 + (jt if taken else jf)


ARCHES = {
    "x86_64": (
        AUDIT_ARCH_X86_64,
        _SYSCALLS_X86_64,
        {"read": 0, "write": 1, "mmap": 9, "rt_sigaction": 13, "setitimer": 38,
         "getpid": 39, "getrusage": 98, "exit_group": 231, "prlimit64": 302},
    ),
    "aarch64": (
        AUDIT_ARCH_AARCH64,
        _SYSCALLS_AARCH64,
        {"read": 63, "write": 64, "exit_group": 94, "setitimer": 103, "rt_sigaction": 134,
         "getrusage": 165, "getpid": 172, "mmap": 222, "prlimit64": 261},
    ),
}  # fmt: skip


@pytest.mark.parametrize("machine", sorted(ARCHES))
def test_seccomp_program_decisions(machine: str) -> None:
    audit_arch, table, allowed = ARCHES[machine]
    pid = 4242
    program = _seccomp_program(machine, pid)
    assert program is not None
    assert len(program) < 4096
    for pc, (code, jt, jf, _) in enumerate(program):
        if code & 0x07 == 0x05:  # BPF_JMP: both targets inside the program
            assert pc + 1 + max(jt, jf) < len(program), pc
    assert len(set(table.values())) == len(table), "two names share a number"
    assert not set(allowed.values()) & set(table.values())

    def decide(name: str, *args: int) -> int:
        return run_filter(program, table[name], audit_arch, *args)

    for name, nr in allowed.items():
        assert run_filter(program, nr, audit_arch) == SECCOMP_RET_ALLOW, name
    for name in _DENIED:
        if name in table:
            assert decide(name) == DENY, name
    assert run_filter(program, allowed["read"], 0x40000003) == SECCOMP_RET_KILL_PROCESS

    flags_arg = {"open": 1, "openat": 2}
    for name, index in flags_arg.items():
        if name not in table:
            continue
        read_only = [0] * index + [os.O_RDONLY | os.O_CLOEXEC | os.O_DIRECTORY]
        assert decide(name, *read_only) == SECCOMP_RET_ALLOW, name
        for flag in (os.O_WRONLY, os.O_RDWR, os.O_CREAT, os.O_TRUNC, os.O_APPEND):
            assert decide(name, *[0] * index, flag | os.O_CLOEXEC) == DENY, (name, flag)

    assert decide("kill", pid, 10) == SECCOMP_RET_ALLOW
    assert decide("tgkill", pid, pid, 10) == SECCOMP_RET_ALLOW
    assert decide("tkill", pid, 10) == SECCOMP_RET_ALLOW
    for other in (1, 0, -1, -pid, pid + 1):
        assert decide("kill", other, 0) == DENY, other
        assert decide("tgkill", other, other, 10) == DENY, other

    if machine == "x86_64":
        assert run_filter(program, X32_SYSCALL_BIT | 0, audit_arch) == DENY
        assert "open" in table and "fork" in table
    else:
        assert "open" not in table and "fork" not in table


def test_unknown_architecture_has_no_program() -> None:
    assert _seccomp_program("sparc64", 1) is None
    assert _seccomp_program("riscv64", 1) is None


def test_a_hardened_worker_cannot_read_a_non_dumpable_parents_environment() -> None:
    """The sandbox server holds the database URL in its environment; it is not dumpable,
    and a worker (even one started as root) has no capability to read it anyway."""
    import subprocess
    import sys

    script = (
        "import json, os, sys\n"
        "from preservarium_sandbox.limits import Limits\n"
        "from preservarium_sandbox.worker.hardening import harden\n"
        "report = harden(Limits(memory_mb=256))\n"
        "try:\n"
        "    open(f'/proc/{os.getppid()}/environ', 'rb').read()\n"
        "    verdict = 'read'\n"
        "except OSError as exc:\n"
        "    verdict = type(exc).__name__\n"
        "status = open('/proc/self/status').read()\n"
        "eff = [l.split()[1] for l in status.splitlines() if l.startswith('CapEff')][0]\n"
        "print(json.dumps({'environ': verdict, 'cap_eff': eff, 'caps': report.capabilities}))\n"
    )
    parent = (
        "import subprocess, sys\n"
        "from preservarium_sandbox.worker.hardening import make_not_dumpable\n"
        "assert make_not_dumpable()\n"
        f"sys.exit(subprocess.run([sys.executable, '-I', '-c', {script!r}], env={{}}).returncode)\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", parent],
        env={"PRESERVARIUM_DATABASE_URL": "postgresql+asyncpg://u:secret@db/x"},
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    verdict = json.loads(done.stdout)
    assert verdict["environ"] == "PermissionError", done.stdout
    assert verdict["cap_eff"] == "0000000000000000" and verdict["caps"] is True
