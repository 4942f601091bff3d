"""`make bench`: every benchmark figure from one run, as ratios to the ceiling.

Starts a broker, a sandbox, a gateway, the naive in-process gateway and a bare aiocoap
server as separate processes, drives each with the raw-UDP load generator (its own
process), and writes bench/results/latest.json plus a printed table. The replay
scenario (`bench/replay.py`: replay throughput, live p99 during a replay) follows, on
services of its own.

The gateway runs `optional` device authentication with no rate limits (one load
generator is one source address). Last come the authenticated contacts: Efento devices
registered with OSCORE and with PSK credentials send on the same route, each over its
own context or DTLS session (`bench.secure_load`), beside plain contacts measured again
once credentials exist (a route contact is then identified before its raw record is
written, in every mode).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from preservarium.db.engine import make_engine
from preservarium.db.migrate import upgrade
from preservarium.identity import AuthKind
from preservarium.repositories import SQLParserRepository
from preservarium_tools.embedded.broker import EmbeddedBroker

from bench import api_idle, batches, replay, rpc, scale
from bench.processes import BIN, Child, run_load, wait_for_coap, wait_for_grpc_health
from bench.secure_devices import SECRET_KEY, register
from bench.workload import payloads

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
EFENTO = ROOT / "examples" / "parsers" / "efento.py"
LOOP = "def identify(payload, metadata):\n    return 'runaway'\n\n" \
       "def parse(payload, metadata):\n    while True:\n        pass\n"  # fmt: skip
DEVICES = 500
WINDOW = 64
THROUGHPUT_S = float(os.environ.get("BENCH_THROUGHPUT_S", "15"))
SEQUENTIAL_S = float(os.environ.get("BENCH_SEQUENTIAL_S", "5"))
SUSTAINED_S = float(os.environ.get("BENCH_SUSTAINED_S", "60"))
SECURE_S = float(os.environ.get("BENCH_SECURE_S", "10"))
SCALE_S = float(os.environ.get("BENCH_SCALE_S", "10"))
SCALE_ROUNDS = int(os.environ.get("BENCH_SCALE_ROUNDS", "3"))
SECURE_DEVICES = 32  # per kind: one lane each
RPC_RUNS = ("rpc_sequential", "rpc_concurrent", "stream_sequential", "stream_concurrent")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spec(
    port: int,
    window: int,
    duration_s: float,
    mix: list[tuple[str, str, int]],
    *,
    skip: int = 0,
) -> str:
    """The load generator's JSON spec: (label, path, weight) over the Efento payloads
    (but the first `skip`: devices registered with credentials)."""
    data = [p.hex() for p in payloads(DEVICES)[skip:]]
    templates = [{"label": label, "path": path, "payloads": data} for label, path, _ in mix]
    weights = [weight for _, _, weight in mix for _ in data]
    return json.dumps(
        {"target": f"127.0.0.1:{port}", "window": window, "duration_s": duration_s,
         "templates": templates, "mix": weights}
    )  # fmt: skip


async def prepare_database(url: str) -> None:
    await upgrade(url)
    engine = make_engine(url)
    repository = SQLParserRepository(engine)
    await repository.upload("efento", EFENTO.read_text())
    await repository.upload("runaway", LOOP)
    await engine.dispose()


def service_env(
    url: str, bootstrap: str, sandbox: str, coap: int, coaps: int | None = None
) -> dict[str, str]:
    """The services' settings: `coaps` is the DTLS port (None: no DTLS listener)."""
    return {
        "PRESERVARIUM_DEVICE_AUTH": "optional",
        "PRESERVARIUM_SECRET_KEY": SECRET_KEY,
        "PRESERVARIUM_COAPS_BIND": "" if coaps is None else f"127.0.0.1:{coaps}",
        "PRESERVARIUM_DEVICE_RATE_PER_MIN": "0",
        "PRESERVARIUM_SOURCE_RATE_PER_MIN": "0",
        "PRESERVARIUM_DATABASE_URL": url,
        "PRESERVARIUM_KAFKA_BOOTSTRAP": bootstrap,
        "PRESERVARIUM_TOPIC_PREFIX": "bench.",
        "PRESERVARIUM_SANDBOX_LISTEN": sandbox,
        "PRESERVARIUM_SANDBOX_ADDR": sandbox,
        "PRESERVARIUM_COAP_BIND": f"127.0.0.1:{coap}",
        "PRESERVARIUM_COAP_ROUTES": "m=efento,x=runaway",
        "PRESERVARIUM_METRICS_PORT": "0",
        "PRESERVARIUM_LOG_LEVEL": "WARNING",
        # No operator API here: the api scenario measures the hot path with it on and off.
        "PRESERVARIUM_API_LISTEN": "",
    }


def scale_spec(port: int, window: int, seconds: float) -> str:
    """The scale scenario's load: Efento contacts on /m."""
    return spec(port, window, seconds, [("m", "/m", 1)])


def metrics_env(ports: dict[str, int], service: str) -> dict[str, str]:
    """The service's metrics on: the batch sizes are read from its histograms."""
    return {"PRESERVARIUM_METRICS_PORT": str(ports[service])}


def loader() -> api_idle.Load:
    """run_load as (port, window, seconds)."""

    async def load(port: int, window: int, seconds: float) -> dict[str, Any]:
        return await run_load(spec(port, window, seconds, [("m", "/m", 1)]))

    return load


async def measure_api(work: Path) -> dict[str, Any]:
    """`python -m bench --only api`: the API-on/off scenario alone."""
    url = f"sqlite+aiosqlite:///{work / 'bench.db'}"
    await prepare_database(url)
    sandbox_addr = f"127.0.0.1:{free_port()}"
    async with EmbeddedBroker(port=free_port()) as broker:
        env = service_env(url, broker.bootstrap, sandbox_addr, 0)
        sandbox = Child("sandbox", [str(BIN / "preservarium-sandbox")], env, work / "sandbox.log")
        try:
            await wait_for_grpc_health(sandbox_addr)
            return {"api_idle": await api_idle.api_on_off(
                work, env, loader(), window=WINDOW, throughput_s=THROUGHPUT_S,
                sequential_s=SEQUENTIAL_S,
            )}  # fmt: skip
        finally:
            sandbox.stop()


async def measure_scale(work: Path) -> dict[str, Any]:
    """`python -m bench --only scale`: CPU per contact, half load, 1 vs 2 gateways alone."""
    url = f"sqlite+aiosqlite:///{work / 'bench.db'}"
    await prepare_database(url)
    sandbox_addr = f"127.0.0.1:{free_port()}"
    ports = {name: free_port(socket.SOCK_DGRAM) for name in ("bare", "gateway", "naive")}
    children: list[Child] = []
    async with EmbeddedBroker(port=free_port()) as broker:
        env = service_env(url, broker.bootstrap, sandbox_addr, ports["gateway"])
        try:
            sandbox = Child("sandbox", [str(BIN / "preservarium-sandbox")], env,
                            work / "sandbox.log")  # fmt: skip
            children.append(sandbox)
            await wait_for_grpc_health(sandbox_addr)
            bare = Child("bare", [sys.executable, "-m", "bench.bare_server", str(ports["bare"])],
                         {}, work / "bare.log")  # fmt: skip
            gateway = Child("gateway", [str(BIN / "preservarium-gateway")], env,
                            work / "gateway.log")  # fmt: skip
            naive_env = {**env, "PRESERVARIUM_COAP_BIND": f"127.0.0.1:{ports['naive']}",
                         "PRESERVARIUM_NAIVE_PARSERS": f"efento={EFENTO}"}  # fmt: skip
            naive = Child("naive", [sys.executable, "-m", "bench.naive"], naive_env,
                          work / "naive.log")  # fmt: skip
            children += [bare, gateway, naive]
            for port in ports.values():
                await wait_for_coap(port)
            running = scale.Running(bare=bare, bare_port=ports["bare"], gateway=gateway,
                                    gateway_port=ports["gateway"], naive=naive,
                                    naive_port=ports["naive"], sandbox=sandbox,
                                    broker_pid=broker.pid)  # fmt: skip
            return {"scale": await scale.scenario(work, env, running, scale_spec,
                                                  window=WINDOW, seconds=SCALE_S,
                                                  rounds=SCALE_ROUNDS)}  # fmt: skip
        finally:
            for child in reversed(children):
                child.stop()


async def measure(work: Path) -> dict[str, Any]:
    url = f"sqlite+aiosqlite:///{work / 'bench.db'}"
    await prepare_database(url)
    sandbox_addr = f"127.0.0.1:{free_port()}"
    ports = {name: free_port(socket.SOCK_DGRAM) for name in ("bare", "gateway", "naive")}
    coaps = free_port(socket.SOCK_DGRAM)
    metrics_ports = {"sandbox": free_port(), "gateway": free_port()}
    results: dict[str, Any] = {}
    children: list[Child] = []
    async with EmbeddedBroker(port=free_port()) as broker:
        env = service_env(url, broker.bootstrap, sandbox_addr, ports["gateway"], coaps)
        try:
            bare = Child("bare", [sys.executable, "-m", "bench.bare_server", str(ports["bare"])],
                         {}, work / "bare.log")  # fmt: skip
            sandbox = Child("sandbox", [str(BIN / "preservarium-sandbox")],
                            env | metrics_env(metrics_ports, "sandbox"),
                            work / "sandbox.log")  # fmt: skip
            children += [bare, sandbox]
            await wait_for_grpc_health(sandbox_addr)
            gateway = Child("gateway", [str(BIN / "preservarium-gateway")],
                            env | metrics_env(metrics_ports, "gateway"),
                            work / "gateway.log")  # fmt: skip
            naive_env = {**env, "PRESERVARIUM_COAP_BIND": f"127.0.0.1:{ports['naive']}",
                         "PRESERVARIUM_NAIVE_PARSERS": f"efento={EFENTO}",
                         "PRESERVARIUM_COAPS_BIND": ""}  # fmt: skip
            naive = Child("naive", [sys.executable, "-m", "bench.naive"], naive_env,
                          work / "naive.log")  # fmt: skip
            children += [gateway, naive]
            for name, port in ports.items():
                try:
                    await wait_for_coap(port)
                except TimeoutError:
                    log = (work / f"{name}.log").read_text()[-2000:]
                    raise RuntimeError(f"{name} did not answer CoAP on {port}:\n{log}") from None

            print("ceiling: bare aiocoap server ...", flush=True)
            only_m = [("m", "/m", 1)]
            results["ceiling"] = await run_load(spec(ports["bare"], WINDOW, THROUGHPUT_S, only_m))
            results["ceiling_sequential"] = await run_load(
                spec(ports["bare"], 1, SEQUENTIAL_S, only_m)
            )

            print("full path: warm-up, then a sustained run ...", flush=True)
            await run_load(spec(ports["gateway"], WINDOW, 5, only_m))
            rss_before = gateway.rss_mb()
            before = await batches.read(metrics_ports)
            results["full"] = await run_load(spec(ports["gateway"], WINDOW, SUSTAINED_S, only_m))
            results["batches"] = batches.between(before, await batches.read(metrics_ports))
            rss_after = gateway.rss_mb()
            results["memory"] = {"rss_before_mb": rss_before, "rss_after_mb": rss_after,
                                 "growth_mb": rss_after - rss_before,
                                 "sustained_s": SUSTAINED_S}  # fmt: skip
            results["full_sequential"] = await run_load(
                spec(ports["gateway"], 1, SEQUENTIAL_S, only_m)
            )

            only_full = os.environ.get("BENCH_ONLY") == "full"
            if not only_full:
                print("naive: parser exec'd in the gateway ...", flush=True)
                await run_load(spec(ports["naive"], WINDOW, 3, only_m))
                results["naive"] = await run_load(
                    spec(ports["naive"], WINDOW, THROUGHPUT_S, only_m)
                )
                results["naive_sequential"] = await run_load(
                    spec(ports["naive"], 1, SEQUENTIAL_S, only_m)
                )

            print("isolation: 5% of contacts hit a parser that loops forever ...", flush=True)
            mix = [("others", "/m", 19), ("runaway", "/x", 1)]
            results["isolation"] = await run_load(spec(ports["gateway"], WINDOW, THROUGHPUT_S, mix))
            if only_full:
                return results

            # Before the authenticated contacts: once some Efento devices have credentials,
            # plain contacts naming them are refused (4.01, then 4.29 for the source).
            print("scale: CPU per contact per process, half load, 1 vs 2 gateways ...")
            running = scale.Running(bare=bare, bare_port=ports["bare"], gateway=gateway,
                                    gateway_port=ports["gateway"], naive=naive,
                                    naive_port=ports["naive"], sandbox=sandbox,
                                    broker_pid=broker.pid)  # fmt: skip
            results["scale"] = await scale.scenario(work, env, running, scale_spec,
                                                    window=WINDOW, seconds=SCALE_S,
                                                    rounds=SCALE_ROUNDS)  # fmt: skip

            print("authenticated contacts: OSCORE, DTLS-PSK, plain again ...", flush=True)
            results |= await secure_runs(url, work, ports["gateway"], coaps, only_m)

            print("sandbox Parse RPC alone ...", flush=True)
            data = payloads(DEVICES)
            results["rpc_sequential"] = await rpc.parse_rpc(sandbox_addr, data, duration_s=3,
                                                            concurrency=1)  # fmt: skip
            results["rpc_concurrent"] = await rpc.parse_rpc(sandbox_addr, data, duration_s=5,
                                                            concurrency=16)  # fmt: skip
            results["stream_sequential"] = await rpc.parse_rpc(
                sandbox_addr, data, duration_s=3, concurrency=1, streams=1
            )
            results["stream_concurrent"] = await rpc.parse_rpc(
                sandbox_addr, data, duration_s=5, concurrency=16, streams=2
            )
            results["in_process_exec"] = rpc.in_process(EFENTO.read_text(), data, duration_s=2)

            print("operator API idle, on vs off ...", flush=True)
            results["api_idle"] = await api_idle.api_on_off(
                work, env, loader(), window=WINDOW, throughput_s=THROUGHPUT_S,
                sequential_s=SEQUENTIAL_S,
            )  # fmt: skip
        finally:
            for child in reversed(children):
                child.stop()
    return results


async def secure_runs(
    url: str, work: Path, port: int, coaps: int, only_m: list[tuple[str, str, int]]
) -> dict[str, Any]:
    """OSCORE and DTLS-PSK contacts, and plain ones under the same conditions."""
    data = payloads(DEVICES)
    oscore = await register(url, work, data, kind=AuthKind.OSCORE, first=0, count=SECURE_DEVICES)
    psk = await register(url, work, data, kind=AuthKind.PSK, first=SECURE_DEVICES,
                         count=SECURE_DEVICES)  # fmt: skip
    # The gateway's directory notices credentials at its reload (every 10 s): from then
    # on, route contacts are identified before their raw record is written.
    await asyncio.sleep(11)
    runs: dict[str, Any] = {}
    for name, target, devices in (("oscore", port, oscore), ("dtls", coaps, psk)):
        load = {"target": f"127.0.0.1:{target}", "mode": name, "devices": devices}
        await run_load(json.dumps({**load, "duration_s": 2}), module="bench.secure_load")
        runs[name] = await run_load(
            json.dumps({**load, "duration_s": SECURE_S}), module="bench.secure_load"
        )
        one = {**load, "devices": devices[:1], "duration_s": SEQUENTIAL_S}
        runs[f"{name}_sequential"] = await run_load(json.dumps(one), module="bench.secure_load")
    # Plain contacts of the devices without credentials, as many lanes as devices above.
    skip = 2 * SECURE_DEVICES
    runs["plain_with_credentials"] = await run_load(
        spec(port, SECURE_DEVICES, SECURE_S, only_m, skip=skip)
    )
    runs["plain_with_credentials_sequential"] = await run_load(
        spec(port, 1, SEQUENTIAL_S, only_m, skip=skip)
    )
    return runs


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    ceiling, ceiling_seq = results["ceiling"], results["ceiling_sequential"]
    full, isolation = results["full"], results["isolation"]
    others = isolation["labels"]["others"]
    lost = full["timeouts"] + sum(
        n for code, n in full["labels"]["m"]["codes"].items() if not code.startswith("2.")
    )
    return {
        "full_throughput_vs_ceiling": full["rate"] / ceiling["rate"],
        "naive_throughput_vs_ceiling": results["naive"]["rate"] / ceiling["rate"],
        "full_vs_naive_throughput": full["rate"] / results["naive"]["rate"],
        "full_sequential_p50_vs_ceiling": full_p50(results) / ceiling_seq["p50_ms"],
        "naive_sequential_p50_vs_ceiling": results["naive_sequential"]["p50_ms"]
        / ceiling_seq["p50_ms"],
        "isolation_others_p99_vs_full_p99": others["p99_ms"] / full["p99_ms"],
        "isolation_others_errors": others["timeouts"]
        + sum(n for code, n in others["codes"].items() if not code.startswith("2.")),
        "full_requests_lost_or_refused": lost,
        "rpc_errors": sum(
            results[name]["errors"] + results[name]["unavailable"] for name in RPC_RUNS
        ),
        "rpc_sequential_p50_ms": results["rpc_sequential"]["p50_ms"],
        "stream_sequential_p50_ms": results["stream_sequential"]["p50_ms"],
        "rpc_p50_vs_in_process": results["rpc_sequential"]["p50_ms"]
        / results["in_process_exec"]["p50_ms"],
        "gateway_rss_growth_mb": results["memory"]["growth_mb"],
        **secure_ratios(results),
        **api_idle.ratios(results["api_idle"]),
        **scale.ratios(results["scale"]),
    }


def secure_ratios(results: dict[str, Any]) -> dict[str, Any]:
    """OSCORE and DTLS beside plain contacts measured in the same conditions."""
    plain, plain_seq = (
        results["plain_with_credentials"],
        results["plain_with_credentials_sequential"],
    )
    out: dict[str, Any] = {}
    for name in ("oscore", "dtls"):
        run = results[name]
        out[f"{name}_throughput_vs_plain"] = run["rate"] / plain["rate"]
        out[f"{name}_sequential_p50_vs_plain"] = (
            results[f"{name}_sequential"]["p50_ms"] / plain_seq["p50_ms"]
        )
        out[f"{name}_not_2xx"] = run["timeouts"] + sum(
            n for code, n in run["labels"][name]["codes"].items() if not code.startswith("2.")
        )
    return out


def full_p50(results: dict[str, Any]) -> float:
    return float(results["full_sequential"]["p50_ms"])


def table(results: dict[str, Any], r: dict[str, Any]) -> str:
    ceiling = results["ceiling"]["rate"]
    rows = [("scenario", "contacts/s", "x ceiling", "p50 ms", "p99 ms")]
    for name in ("ceiling", "full", "naive", "isolation", "plain_with_credentials", "oscore",
                 "dtls"):  # fmt: skip
        row = results[name]
        rows.append((name, f"{row['rate']:.0f}", f"{row['rate'] / ceiling:.2f}",
                     f"{row['p50_ms']:.2f}", f"{row['p99_ms']:.2f}"))  # fmt: skip
    sequential = ("ceiling_sequential", "full_sequential", "naive_sequential",
                  "plain_with_credentials_sequential", "oscore_sequential",
                  "dtls_sequential")  # fmt: skip
    for name in sequential:
        row = results[name]
        rows.append((name, f"{row['rate']:.0f}", "", f"{row['p50_ms']:.2f}",
                     f"{row['p99_ms']:.2f}"))  # fmt: skip
    for name in ("rpc_sequential", "rpc_concurrent", "stream_sequential", "stream_concurrent",
                 "in_process_exec"):  # fmt: skip
        row = results[name]
        rows.append((name, f"{row['rate']:.0f}", "", f"{row['p50_ms']:.3f}",
                     f"{row['p99_ms']:.3f}"))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.append("")
    lines += [f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}"
              for key, value in r.items()]  # fmt: skip
    return "\n".join(lines)


def write_report(
    name: str, started: float, results: dict[str, Any], summary: dict[str, Any]
) -> dict[str, Any]:
    """bench/results/NAME: when and where the run was made, its results and ratios."""
    report = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "duration_s": time.time() - started,
        "results": results,
        "ratios": summary,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / name).write_text(json.dumps(report, indent=2))
    return report


def scale_only() -> None:
    """The scale scenario alone: bench/results/scale.json and its table."""
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="preservarium-bench-") as work:
        results = asyncio.run(measure_scale(Path(work)))
    summary = scale.ratios(results["scale"])
    report = write_report("scale.json", started, results, summary)
    print(scale.table(results["scale"]))
    print("\n".join(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}"
                    for key, value in summary.items()))  # fmt: skip
    print(f"\nwritten: {RESULTS / 'scale.json'} ({report['duration_s']:.0f} s)")


def full_only() -> None:
    """`python -m bench --only full`: the ceiling and the full path (with its batch
    sizes) alone, for quick before/after comparisons."""
    os.environ["BENCH_ONLY"] = "full"
    with tempfile.TemporaryDirectory(prefix="preservarium-bench-") as work:
        results = asyncio.run(measure(Path(work)))
    ceiling, full = results["ceiling"], results["full"]
    report = {"results": results, "full_throughput_vs_ceiling": full["rate"] / ceiling["rate"]}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "full.json").write_text(json.dumps(report, indent=2))
    others = results["isolation"]["labels"]["others"]
    print(f"isolation: others p99 {others['p99_ms']:.2f} ms "
          f"({others['p99_ms'] / full['p99_ms']:.2f}x full), timeouts {others['timeouts']}, "
          f"codes {others['codes']}")  # fmt: skip
    for name in ("ceiling", "full", "ceiling_sequential", "full_sequential"):
        row = results[name]
        print(f"{name}: {row['rate']:.0f} contacts/s ({row['rate'] / ceiling['rate']:.3f}x "
              f"ceiling), p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms")  # fmt: skip
    print(batches.table(results["batches"]))


def main() -> None:
    started = time.time()
    if sys.argv[1:] == ["--only", "scale"]:
        scale_only()
        return
    if sys.argv[1:] == ["--only", "full"]:
        full_only()
        return
    only_api = sys.argv[1:] == ["--only", "api"]
    with tempfile.TemporaryDirectory(prefix="preservarium-bench-") as work:
        results = asyncio.run((measure_api if only_api else measure)(Path(work)))
    report: dict[str, Any]
    if only_api:
        report = {"results": results, "ratios": api_idle.ratios(results["api_idle"])}
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "api.json").write_text(json.dumps(report, indent=2))
        print(json.dumps(report, indent=2))
        return
    with tempfile.TemporaryDirectory(prefix="preservarium-bench-replay-") as work:
        print("replay: services of its own (route devices accepted, no rate limits) ...")
        results["replay"] = asyncio.run(replay.standalone(Path(work)))
    summary = ratios(results)
    report = write_report("latest.json", started, results, summary)
    print(table(results, summary))
    print(scale.table(results["scale"]))
    print(batches.table(results["batches"]))
    print(replay.table(results["replay"]))
    print(f"\nwritten: {RESULTS / 'latest.json'} ({report['duration_s']:.0f} s)")


if __name__ == "__main__":
    main()
