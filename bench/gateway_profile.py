"""The gateway's own CPU per contact, beside the bare aiocoap server's, with a breakdown.

`python -m bench.gateway_profile [--seconds S] [--window W] [--runs N] [--against DIR]
[--no-profile]` starts a broker, a sandbox, the real gateway and the bare aiocoap server
(bench.bare_server) as separate processes, drives each with the raw-UDP load generator
(Efento contacts on the `/m` route), and reads each server's CPU (utime + stime of every
thread, from /proc) before and after every run: CPU per answered contact is steadier than
throughput on a shared machine. With --against, a second gateway runs the sources of
another tree (say main's) beside the first, on the same sandbox and broker; runs
alternate gateway, against, bare, short and repeated, so both gateways see the same
machine, and the summary gives their run-by-run ratio.

Then (unless --no-profile) one more run of each gateway under cProfile (its default
clock: the thread CPU clock costs a system call per profiler event here; the time spent
waiting in epoll is left out of the totals instead). A gateway is started through
`python -m bench.gateway_profile serve`, which runs it with a profiler that SIGUSR1 turns
on and SIGUSR2 turns off and writes out. The profile gives each stage's share of the
main thread's CPU (bench.gateway_stages); the budget scales those shares to the
unprofiled main-thread CPU per contact (cProfile's own cost inflates functions that make
many calls, so the stage figures are estimates; the totals are measured).

Writes bench/results/gateway_profile.json and prints the tables.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from preservarium_tools.embedded.broker import EmbeddedBroker

from bench.gateway_stages import Budget, budget
from bench.processes import BIN, Child, run_load, wait_for_coap, wait_for_grpc_health

RESULTS = Path(__file__).resolve().parent / "results"
TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def thread_cpu_s(pid: int) -> dict[int, float]:
    """utime + stime of each thread of `pid`, in seconds."""
    out: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) * TICK_S
    return out


async def measured(pid: int, spec: str) -> dict[str, Any]:
    """One load run; the server's CPU per answered contact (all threads, main thread)."""
    before = thread_cpu_s(pid)
    report = await run_load(spec)
    after = thread_cpu_s(pid)
    total = sum(after.values()) - sum(before.values())
    main = after.get(pid, 0.0) - before.get(pid, 0.0)
    answered = max(1, int(report["answered"]))
    return {
        "answered": report["answered"],
        "timeouts": report["timeouts"],
        "rate": report["rate"],
        "p50_ms": report["p50_ms"],
        "p99_ms": report["p99_ms"],
        "cpu_s": total,
        "cpu_us_per_contact": total / answered * 1e6,
        "main_thread_us_per_contact": main / answered * 1e6,
    }


async def measure(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from bench.__main__ import prepare_database, service_env, spec

    url = f"sqlite+aiosqlite:///{work / 'bench.db'}"
    await prepare_database(url)
    sandbox_addr = f"127.0.0.1:{free_port()}"
    # "gateway": this tree; "against": --against's tree, beside it on the same sandbox and
    # broker, so that alternating short runs see the same machine (it is shared).
    names = ["gateway", "against"] if args.against is not None else ["gateway"]
    ports = {name: free_port(socket.SOCK_DGRAM) for name in [*names, "bare"]}
    children: dict[str, Child] = {}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in ports}
    async with EmbeddedBroker(port=free_port()) as broker:
        env = service_env(url, broker.bootstrap, sandbox_addr, 0)
        try:
            children["sandbox"] = Child("sandbox", [str(BIN / "preservarium-sandbox")], env,
                                        work / "sandbox.log")  # fmt: skip
            await wait_for_grpc_health(sandbox_addr)
            for name in names:
                tree = args.against if name == "against" else None
                children[name] = Child(
                    name, [sys.executable, "-m", "bench.gateway_profile", "serve"],
                    {**env, "PRESERVARIUM_COAP_BIND": f"127.0.0.1:{ports[name]}",
                     "PYTHONPATH": _pythonpath(tree),
                     "BENCH_PROFILE_OUT": str(work / f"{name}.prof")},
                    work / f"{name}.log",
                )  # fmt: skip
            children["bare"] = Child(
                "bare", [sys.executable, "-m", "bench.bare_server", str(ports["bare"])], {},
                work / "bare.log",
            )  # fmt: skip
            for name, port in ports.items():
                try:
                    await wait_for_coap(port)
                except TimeoutError:
                    log = (work / f"{name}.log").read_text()[-2000:]
                    raise RuntimeError(f"{name} did not answer CoAP on {port}:\n{log}") from None
            only_m = [("m", "/m", 1)]
            load = {name: spec(port, args.window, args.seconds, only_m)
                    for name, port in ports.items()}  # fmt: skip
            for port in ports.values():
                await run_load(spec(port, args.window, 3, only_m))  # warm-up
            idle = {name: await idle_cpu(children[name].pid) for name in names}
            for n in range(args.runs):
                for name in ports:
                    print(f"run {n + 1}/{args.runs}: {name} ...", flush=True)
                    runs[name].append(await measured(children[name].pid, load[name]))
            profiles: dict[str, Any] = {}
            for name in names if args.profile else []:
                print(f"profiled run: {name} ...", flush=True)
                profiles[name] = await profiled(children[name], work, load[name], runs[name])
                if args.keep_profile is not None:
                    kept = args.keep_profile.with_stem(f"{args.keep_profile.stem}-{name}")
                    kept.write_bytes((work / f"{name}.prof").read_bytes())
        finally:
            for child in reversed(children.values()):
                child.stop()
    return {"runs": runs, "idle": idle, "profiles": profiles}


async def profiled(
    child: Child, work: Path, load: str, runs: list[dict[str, Any]]
) -> dict[str, Any]:
    """One more run with the profiler on; its budget, scaled to the unprofiled runs."""
    path = work / f"{child.name}.prof"
    os.kill(child.pid, signal.SIGUSR1)
    run = await measured(child.pid, load)
    os.kill(child.pid, signal.SIGUSR2)
    await _wait_for(path)
    profile = budget(path, _median([r["main_thread_us_per_contact"] for r in runs]))
    profile.load = run
    return profile.as_dict()


async def idle_cpu(pid: int, seconds: float = 5.0) -> dict[str, float]:
    """What the gateway spends with no contacts (its periodic database reads: pending
    commands, the directory's watch), in ms of CPU per second."""
    before = sum(thread_cpu_s(pid).values())
    await asyncio.sleep(seconds)
    spent = sum(thread_cpu_s(pid).values()) - before
    return {"seconds": seconds, "cpu_ms_per_s": spent / seconds * 1000}


def _pythonpath(tree: Path | None) -> str:
    """PYTHONPATH for the gateway: this bench first, then the other tree's packages."""
    paths = [str(Path(__file__).resolve().parents[1])]
    if tree is not None:
        paths += [str(tree / "gateway" / "src"), str(tree / "sdk" / "src")]
    return os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)


async def _wait_for(path: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists() or path.stat().st_size == 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no profile written to {path}")
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)  # the dump is written in one go; let it finish


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else float("nan")


def summary(results: dict[str, Any]) -> dict[str, float]:
    """Medians over the runs, and the paired ratio of the two gateways (run by run)."""
    out: dict[str, float] = {}
    for name, runs in results["runs"].items():
        out[f"{name}_cpu_us_per_contact"] = _median([r["cpu_us_per_contact"] for r in runs])
        out[f"{name}_main_thread_us_per_contact"] = _median(
            [r["main_thread_us_per_contact"] for r in runs]
        )
        out[f"{name}_rate"] = _median([r["rate"] for r in runs])
        out[f"{name}_lost"] = sum(r["timeouts"] for r in runs)
    for name, idle in results["idle"].items():
        out[f"{name}_idle_cpu_ms_per_s"] = idle["cpu_ms_per_s"]
    out["gateway_over_bare_us"] = out["gateway_cpu_us_per_contact"] - out["bare_cpu_us_per_contact"]
    if "against" in results["runs"]:
        pairs = zip(results["runs"]["gateway"], results["runs"]["against"], strict=True)
        out["gateway_vs_against_paired"] = _median(
            [a["cpu_us_per_contact"] / b["cpu_us_per_contact"] for a, b in pairs]
        )
    return out


def table(results: dict[str, Any]) -> str:
    lines = ["server   run  contacts/s  p50 ms  p99 ms  CPU us/contact  main thread us"]
    for name, runs in results["runs"].items():
        for n, r in enumerate(runs, 1):
            lines.append(
                f"{name:8} {n:3}  {r['rate']:10.0f}  {r['p50_ms']:6.2f}  {r['p99_ms']:6.2f}"
                f"  {r['cpu_us_per_contact']:14.0f}  {r['main_thread_us_per_contact']:14.0f}"
            )
    lines.append("")
    lines += [f"{key}: {value:.3f}" for key, value in results["summary"].items()]
    for name, profile in results["profiles"].items():
        lines += ["", f"[{name}]", Budget.render(profile)]
    return "\n".join(lines)


def serve() -> None:
    """The gateway, with a profiler SIGUSR1 starts and SIGUSR2 stops and writes out."""
    from preservarium_gateway.main import main

    profiler = cProfile.Profile()
    out = os.environ["BENCH_PROFILE_OUT"]

    def start(signum: int, frame: Any) -> None:
        profiler.enable()

    def stop(signum: int, frame: Any) -> None:
        profiler.disable()
        profiler.dump_stats(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    sys.argv = ["preservarium-gateway"]  # the gateway reads its own options from argv
    main()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway_profile")
    parser.add_argument("command", nargs="?", choices=["serve"], help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each run")
    # 16 in flight keeps the gateway's answers inside aiocoap's empty-ACK delay (0.1 s)
    # on a busy machine: at 64 it answers late, each contact then costs an empty ACK, a
    # separate response and its ACK, and the CPU per contact follows the throughput.
    parser.add_argument("--window", type=int, default=16, help="requests in flight")
    parser.add_argument("--runs", type=int, default=4, help="runs per server")
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument("--out", type=Path, default=RESULTS / "gateway_profile.json")
    parser.add_argument(
        "--against", type=Path,
        help="also run a gateway from this source tree, beside this one "
        "(`git archive main gateway sdk | tar -x -C DIR`)",
    )  # fmt: skip
    parser.add_argument(
        "--keep-profile", type=Path,
        help="keep the cProfile outputs (STEM-gateway.prof, STEM-against.prof)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.command == "serve":
        serve()
        return
    with tempfile.TemporaryDirectory(prefix="preservarium-gwprofile-") as work:
        results = asyncio.run(measure(Path(work), args))
    results["summary"] = summary(results)
    results["at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    results["window"], results["seconds"] = args.window, args.seconds
    results["against"] = None if args.against is None else str(args.against)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
