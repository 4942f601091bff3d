"""Scenario: what a contact costs each process, latency at half load, 1 vs 2 gateways.

For each target (the bare aiocoap ceiling, the full path with one gateway process and
with two, the naive in-process design) a closed-loop run measures the maximum rate and,
over the same window, the CPU seconds of every process from /proc (`bench.cpu`): the
gateway (with its children when it has several), the sandbox server, its workers, the
broker, and the load generator (a reaped child of this process: RUSAGE_CHILDREN). Then an
open-loop run (`bench.openloop`) at 50% of the measured maximum gives p50 and p99 where
the queue is short: the latency a device sees on a loaded but not saturated gateway.
"""

from __future__ import annotations

import json
import resource
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.cpu import CpuMeter, Group, per_contact_ms
from bench.processes import BIN, Child, run_load, wait_for_coap

HALF = 0.5
# The processes whose CPU is the service's: what an operator provisions cores for.
SERVICE = ("gateway", "sandbox", "workers")
Spec = Callable[[int, int, float], str]  # (port, window, seconds) -> loadgen spec JSON


@dataclass(frozen=True, slots=True)
class Target:
    """A server under load: its CoAP port and the pids to meter (None: not in its path)."""

    name: str
    port: int
    gateway_pid: int
    sandbox_pid: int | None
    broker_pid: int | None


def groups(target: Target) -> list[Group]:
    """The process groups metered for `target`."""
    found = [Group("gateway", target.gateway_pid, "tree")]
    if target.sandbox_pid is not None:
        found += [Group("sandbox", target.sandbox_pid, "self"),
                  Group("workers", target.sandbox_pid, "children")]  # fmt: skip
    if target.broker_pid is not None:
        found.append(Group("broker", target.broker_pid, "tree"))
    return found


def udp_receive_drops(snmp: Path = Path("/proc/net/snmp")) -> int:
    """Datagrams the kernel dropped so far because a UDP socket's receive buffer was full
    (RcvbufErrors; for the whole network namespace, so other programs' drops count too).
    An open-loop load meets a server that stalls with a full buffer, not a shorter queue."""
    header, values = [line.split()[1:] for line in snmp.read_text().splitlines()
                      if line.startswith("Udp:")][:2]  # fmt: skip
    return int(dict(zip(header, values, strict=True))["RcvbufErrors"])


def children_cpu_s() -> float:
    """CPU seconds of this process's reaped children so far (the load generators)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_figures(used: dict[str, float], contacts: int) -> dict[str, Any]:
    """Per-contact CPU by process group, and contacts per CPU-second of the service alone."""
    service_s = sum(used.get(name, 0.0) for name in SERVICE)
    return {
        "cpu_s": used,
        "cpu_ms_per_contact": per_contact_ms(used, contacts),
        "service_cpu_ms_per_contact": 1000 * service_s / contacts if contacts else float("nan"),
        "contacts_per_service_cpu_s": contacts / service_s if service_s else float("nan"),
    }


async def metered(
    target: Target, spec: str, load: Callable[[str], Awaitable[dict[str, Any]]] = run_load
) -> dict[str, Any]:
    """One load run against `target` with the CPU of each process over its window."""
    meter = CpuMeter(groups(target))
    loadgen_before, drops_before = children_cpu_s(), udp_receive_drops()
    meter.start()
    result = await load(spec)
    used = meter.stop()
    used["loadgen"] = children_cpu_s() - loadgen_before
    drops = udp_receive_drops() - drops_before
    return {**result, **cpu_figures(used, int(result["answered"])), "udp_receive_drops": drops}


async def at_half_load(target: Target, spec: Spec, max_rate: float, seconds: float) -> Any:
    """Open loop at 50% of `max_rate` against `target`: p50 and p99 with CPU."""
    base = json.loads(spec(target.port, 1, seconds))
    base.pop("window", None)
    open_spec = json.dumps({**base, "rate": HALF * max_rate})
    return await metered(target, open_spec, lambda s: run_load(s, module="bench.openloop"))


def median_run(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median rate, with every round's rate and service CPU beside it
    (on a shared machine one round can meet a burst of someone else's work)."""
    ordered = sorted(rounds, key=lambda run: float(run["rate"]))
    chosen = ordered[(len(ordered) - 1) // 2]
    return {**chosen, "round_rates": [run["rate"] for run in rounds],
            "round_service_cpu_ms_per_contact": [run["service_cpu_ms_per_contact"]
                                                 for run in rounds]}  # fmt: skip


async def scale_runs(
    targets: list[Target], spec: Spec, *, window: int, seconds: float, half_load: set[str],
    rounds: int = 1,
) -> dict[str, Any]:  # fmt: skip
    """Closed-loop maximum with CPU per contact for each target, in `rounds` alternating
    rounds (A B C, A B C, ...: a slow spell of the machine hits every target alike), the
    median round kept; then, for the targets named in `half_load`, p50/p99 at half that
    median rate."""
    for target in targets:
        await run_load(spec(target.port, window, 3))  # warm-up
    measured: dict[str, list[dict[str, Any]]] = {target.name: [] for target in targets}
    for round_number in range(rounds):
        for target in targets:
            print(f"scale: {target.name}: maximum rate with CPU per process "
                  f"(round {round_number + 1} of {rounds}) ...", flush=True)  # fmt: skip
            measured[target.name].append(await metered(target, spec(target.port, window, seconds)))
    runs: dict[str, Any] = {name: median_run(found) for name, found in measured.items()}
    for target in targets:
        if target.name in half_load:
            print(f"scale: {target.name}: latency at 50% of its maximum (open loop) ...",
                  flush=True)  # fmt: skip
            runs[f"{target.name}_half_load"] = await at_half_load(
                target, spec, runs[target.name]["rate"], seconds
            )
    return runs


def not_2xx(run: dict[str, Any]) -> int:
    """Requests of a run that were not answered with a success code (or not at all)."""
    codes = (int(count) for label in run["labels"].values()
             for code, count in label["codes"].items() if not code.startswith("2."))  # fmt: skip
    return int(run["timeouts"]) + sum(codes)


def ratios(runs: dict[str, Any]) -> dict[str, Any]:
    """The headline figures: per-contact service CPU, 1 vs 2 processes, half-load p99."""
    out: dict[str, Any] = {}
    for name in ("full", "full_2_processes", "naive"):
        if name in runs:
            out[f"{name}_service_cpu_ms_per_contact"] = runs[name]["service_cpu_ms_per_contact"]
    # A figure per contact means something only if the contacts were served: count the rest.
    out["scale_not_2xx"] = sum(not_2xx(run) for run in runs.values())
    if "full" in runs and "naive" in runs:
        out["full_vs_naive_service_cpu"] = (
            runs["full"]["service_cpu_ms_per_contact"] / runs["naive"]["service_cpu_ms_per_contact"]
        )
    if "full" in runs and "full_2_processes" in runs:
        out["two_vs_one_process_throughput"] = (
            runs["full_2_processes"]["rate"] / runs["full"]["rate"]
        )
    for name in ("full", "full_2_processes", "ceiling"):
        half = runs.get(f"{name}_half_load")
        if half is not None:
            out[f"{name}_half_load_p50_ms"] = half["p50_ms"]
            out[f"{name}_half_load_p99_ms"] = half["p99_ms"]
            out[f"{name}_half_load_unanswered"] = half["sent"] - half["answered"]
            out[f"{name}_half_load_udp_receive_drops"] = half["udp_receive_drops"]
    return out


def table(runs: dict[str, Any]) -> str:
    """CPU per contact per process, and latency at half load, as printed rows."""
    names = ("gateway", "sandbox", "workers", "broker", "loadgen")
    rows = [("run", "contacts/s", "p50 ms", "p99 ms", *(f"{n} ms" for n in names),
             "service ms", "contacts/CPU-s")]  # fmt: skip
    for name, run in runs.items():
        per = run["cpu_ms_per_contact"]
        rows.append((name, f"{run['rate']:.0f}", f"{run['p50_ms']:.2f}", f"{run['p99_ms']:.2f}",
                     *(f"{per[n]:.3f}" if n in per else "-" for n in names),
                     f"{run['service_cpu_ms_per_contact']:.3f}",
                     f"{run['contacts_per_service_cpu_s']:.0f}"))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True))
                     for row in rows)  # fmt: skip


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, slots=True)
class Running:
    """The services a benchmark run has started (pids and CoAP ports)."""

    bare: Child
    bare_port: int
    gateway: Child
    gateway_port: int
    naive: Child
    naive_port: int
    sandbox: Child
    broker_pid: int | None


async def scenario(
    work: Path, env: dict[str, str], running: Running, spec: Spec, *, window: int,
    seconds: float, rounds: int,
) -> dict[str, Any]:  # fmt: skip
    """Every scale figure, with a two-process gateway started beside the others."""
    port = _free_udp_port()
    two_env = {**env, "PRESERVARIUM_COAP_BIND": f"127.0.0.1:{port}",
               "PRESERVARIUM_COAPS_BIND": "", "PRESERVARIUM_METRICS_PORT": "0"}  # fmt: skip
    two = Child("gateway2", [str(BIN / "preservarium-gateway"), "--processes", "2"], two_env,
                work / "gateway2.log")  # fmt: skip
    try:
        await wait_for_coap(port)
        sandbox, broker = running.sandbox.pid, running.broker_pid
        targets = [
            Target("ceiling", running.bare_port, running.bare.pid, None, None),
            Target("full", running.gateway_port, running.gateway.pid, sandbox, broker),
            Target("full_2_processes", port, two.pid, sandbox, broker),
            Target("naive", running.naive_port, running.naive.pid, None, broker),
        ]
        return await scale_runs(targets, spec, window=window, seconds=seconds, rounds=rounds,
                                half_load={"ceiling", "full", "full_2_processes"})  # fmt: skip
    finally:
        two.stop()
