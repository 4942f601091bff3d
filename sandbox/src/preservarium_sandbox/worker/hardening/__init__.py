"""Defence-in-depth for a worker process: descriptors, network, rlimits, privileges, syscalls.

One module per layer: `descriptors`, `namespaces`, `capabilities` (no_new_privs,
dumpable, capabilities), `seccomp`; `report` says what took, `libc` makes the calls.

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
Each worker sends its report in its first frame; the service logs it at start.
"""

from __future__ import annotations

import resource

from preservarium_sandbox.limits import Limits, rlimits_for
from preservarium_sandbox.worker.hardening.capabilities import (
    make_not_dumpable,
    set_no_new_privs,
    try_drop_capabilities,
    try_no_new_privs,
)
from preservarium_sandbox.worker.hardening.descriptors import close_inherited_fds
from preservarium_sandbox.worker.hardening.namespaces import (
    enter_network_namespace,
    try_network_namespace,
)
from preservarium_sandbox.worker.hardening.report import LAYERS, HardeningReport
from preservarium_sandbox.worker.hardening.seccomp import install_seccomp_filter, try_seccomp

__all__ = [
    "LAYERS",
    "HardeningReport",
    "apply_rlimits",
    "close_inherited_fds",
    "enter_network_namespace",
    "harden",
    "install_seccomp_filter",
    "make_not_dumpable",
    "set_no_new_privs",
]


def apply_rlimits(limits: Limits) -> None:
    """Apply `rlimits_for(limits)`; raises OSError/ValueError if the kernel refuses one."""
    for which, soft, hard in rlimits_for(limits):
        resource.setrlimit(which, (soft, hard))


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
    reason = try_network_namespace()
    if reason is not None:
        notes.append(reason)
    network_namespace = reason is None

    try:
        apply_rlimits(limits)
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"cannot apply the worker rlimits: {exc}") from exc

    reason = try_no_new_privs()
    if reason is not None:
        notes.append(reason)
    no_new_privs = reason is None

    reason = try_drop_capabilities()
    if reason is not None:
        notes.append(reason)
    capabilities = reason is None

    reason = try_seccomp()
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
