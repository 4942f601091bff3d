"""Replay benchmark: how fast `preservarium replay` goes, and what it costs live traffic.

1. Fill `uplink.raw` with Efento contacts through the full path (gateway, sandbox,
   broker), as fast as it goes (a closed loop): also the maximum live rate.
2. Replay that window with no rate bound: replay throughput (uplinks/s).
3. Live p50/p99 at half the maximum live rate (an open loop: contacts arrive on a
   schedule, whatever the answers, as independent devices send them), with no replay
   (after a short warm-up), then the same load while a replay runs at the default rate
   (200/s), then again with no replay (the machine's drift meanwhile).

A closed loop would measure saturation instead: its window of requests is always full,
so any extra work (a replay) shows up as a longer queue, not as what a device sees.

`python -m bench.replay` runs it alone (with its own broker, sandbox and gateway);
`make bench` runs it after the other scenarios. Durations: BENCH_REPLAY_FILL_S,
BENCH_REPLAY_LIVE_S; the live load's share of the maximum: BENCH_REPLAY_LOAD (0.5).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from preservarium_tools.embedded.broker import EmbeddedBroker

from bench.processes import BIN, Child, run_load, wait_for_coap, wait_for_grpc_health

FILL_S = float(os.environ.get("BENCH_REPLAY_FILL_S", "10"))
LIVE_S = float(os.environ.get("BENCH_REPLAY_LIVE_S", "10"))
LOAD = float(os.environ.get("BENCH_REPLAY_LOAD", "0.5"))
# The fill's in-flight window: enough to keep the gateway busy (its rate is the maximum).
FILL_WINDOW = 32
DEFAULT_RATE = "200"
# The gateway's metrics port, in the scenario's environment (the bench's own key).
GATEWAY_METRICS = "BENCH_GATEWAY_METRICS_PORT"
WARM_UP_S = 3.0


def _at(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


async def _replay(env: dict[str, str], since: float, until: float, rate: str) -> Any:
    """`preservarium replay efento --json` over [since, until]; its JSON summary."""
    process = await asyncio.create_subprocess_exec(
        str(BIN / "preservarium"), "replay", "efento", "--since", _at(since),
        "--until", _at(until), "--rate", rate, "--json",
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"replay failed ({process.returncode}): {err.decode()[-2000:]}")
    return json.loads(out)


async def scenario(env: dict[str, str], gateway_port: int, spec: Any) -> dict[str, Any]:
    """The replay figures, on running services (`spec(port, window, seconds, mix)` makes
    a load generator spec)."""
    only_m = [("m", "/m", 1)]
    fill_start = time.time()
    fill = await run_load(spec(gateway_port, FILL_WINDOW, FILL_S, only_m))
    fill_end = time.time()
    print("replay: unbounded rate over the window just filled ...", flush=True)
    unbounded = await _replay(env, fill_start, fill_end, "100000")
    live_rate = round(fill["rate"] * LOAD, 1)
    live = _open_loop(spec(gateway_port, FILL_WINDOW, LIVE_S, only_m), live_rate)
    print(f"replay: live at {live_rate}/s without, then during a replay at "
          f"{DEFAULT_RATE}/s ...", flush=True)  # fmt: skip
    # A first open-loop run is slower at its start (new endpoints, caches, the broker
    # after the replay's writes): warm up, so that "without" is not its first run.
    await run_load(_open_loop(spec(gateway_port, FILL_WINDOW, WARM_UP_S, only_m), live_rate))
    stages = Stages(int(env[GATEWAY_METRICS]))
    quiet = await stages.around(run_load(live))
    replay = asyncio.create_task(_replay(env, fill_start, fill_end, DEFAULT_RATE))
    await asyncio.sleep(2)  # the replay reads the originals first; then it parses
    during = await stages.around(run_load(live))
    live_ended = time.time()
    replayed = await replay
    # without again: how much the machine drifted meanwhile
    after = await stages.around(run_load(live))
    return {
        "fill": _latency(fill),
        "max_live_rate": fill["rate"],
        "unbounded": {
            "replayed": unbounded["counts"].get("replayed", 0),
            "uplinks_per_s": unbounded["uplinks_per_s"],
            "offsets_by_time": unbounded["offsets_by_time"],
        },
        "at_default_rate": {
            "replayed": replayed["counts"].get("replayed", 0),
            "uplinks_per_s": replayed["uplinks_per_s"],
            # False: the replay ended before the live load did (the figures mix both).
            "outlasted_live": time.time() - live_ended > 0.5,
        },
        "live_rate": live_rate,
        "live_without": _latency(quiet),
        "live_during": _latency(during),
        "live_after": _latency(after),
        "live_p99_ratio": during["p99_ms"] / quiet["p99_ms"] if quiet["p99_ms"] else None,
        # Per stage of the gateway, p99 from its histograms' buckets (an upper bound).
        "stages_p99_ms": dict(zip(("without", "during", "after"), stages.p99s, strict=True)),
    }


# The gateway's stages a live contact waits for, as (histogram, label) in its metrics.
STAGES = {
    "contact": ("preservarium_gateway_contact_seconds", None),
    "raw_publish": ("preservarium_gateway_kafka_publish_seconds", ("topic", "raw")),
    "sandbox_call": ("preservarium_gateway_sandbox_call_seconds", None),
}


class Stages:
    """Reads the gateway's latency histograms around a live window: each stage's p99 in
    that window, from the difference of its bucket counts."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.p99s: list[dict[str, float | None]] = []

    async def around(self, window: Awaitable[dict[str, Any]]) -> dict[str, Any]:
        before = await asyncio.to_thread(self._buckets)
        result = await window
        after = await asyncio.to_thread(self._buckets)
        self.p99s.append({
            stage: _p99({le: after[stage].get(le, 0) - n for le, n in before[stage].items()})
            for stage in STAGES
        })  # fmt: skip
        return result

    def _buckets(self) -> dict[str, dict[float, float]]:
        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        found: dict[str, dict[float, float]] = {stage: {} for stage in STAGES}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if not sample.name.endswith("_bucket"):
                    continue
                for stage, (name, label) in STAGES.items():
                    if sample.name != f"{name}_bucket":
                        continue
                    if label is not None and not sample.labels.get(label[0], "").endswith(label[1]):
                        continue  # (topics are named with their prefix)
                    le = float(sample.labels["le"])
                    found[stage][le] = found[stage].get(le, 0) + sample.value
        return found


def _p99(cumulative: dict[float, float]) -> float | None:
    """The upper bound (ms) of the bucket that holds the 99th percentile."""
    if not cumulative or max(cumulative.values()) <= 0:
        return None
    total = cumulative[max(cumulative)]
    for le in sorted(cumulative):
        if cumulative[le] >= 0.99 * total:
            return le * 1000
    return None


def _open_loop(spec: str, rate: float) -> str:
    """The spec as an open loop at `rate` contacts/s."""
    return json.dumps({**json.loads(spec), "rate": rate})


def _latency(load: dict[str, Any]) -> dict[str, Any]:
    codes = {code: n for label in load["labels"].values() for code, n in label["codes"].items()}
    return {**{key: load[key] for key in ("rate", "p50_ms", "p99_ms", "timeouts")}, "codes": codes}


def replay_env(env: dict[str, str]) -> dict[str, str]:
    """The services' environment with route devices accepted and no contact rate limits:
    the benchmark's devices carry no credentials and send faster than a real device."""
    return {
        **env,
        "PRESERVARIUM_DEVICE_AUTH": "optional",
        "PRESERVARIUM_DEVICE_RATE_PER_MIN": "0",
        "PRESERVARIUM_SOURCE_RATE_PER_MIN": "0",
    }


def table(figures: dict[str, Any]) -> str:
    """The figures as lines for the printed report."""
    u, d = figures["unbounded"], figures["at_default_rate"]
    q, live = figures["live_without"], figures["live_during"]
    rate = figures.get("live_rate", q["rate"])
    return "\n".join([
        f"replay unbounded: {u['replayed']} uplinks at {u['uplinks_per_s']:.0f}/s",
        f"replay at {DEFAULT_RATE}/s: {d['replayed']} uplinks at {d['uplinks_per_s']:.0f}/s",
        f"live at {rate:.0f}/s (open loop), no replay: p50 {q['p50_ms']:.2f} ms, "
        f"p99 {q['p99_ms']:.2f} ms",
        f"live at {rate:.0f}/s (open loop), during replay: p50 {live['p50_ms']:.2f} ms, "
        f"p99 {live['p99_ms']:.2f} ms",
        *_after(figures),
        *_stages(figures),
    ])  # fmt: skip


def _stages(figures: dict[str, Any]) -> list[str]:
    """A line per live window: each gateway stage's p99 (bucket bound, ms)."""
    windows = figures.get("stages_p99_ms") or {}
    return [
        f"gateway stages' p99 {window} the replay: "
        + ", ".join(f"{stage} <= {ms:g} ms" for stage, ms in p99s.items() if ms is not None)
        for window, p99s in windows.items()
    ]


def _after(figures: dict[str, Any]) -> list[str]:
    after = figures.get("live_after")
    if after is None:
        return []
    return [f"live after the replay: p50 {after['p50_ms']:.2f} ms, p99 {after['p99_ms']:.2f} ms"]


Scenario = Callable[[dict[str, str], int, Any], Awaitable[dict[str, Any]]]


async def standalone(work: Path, run: Scenario | None = None) -> dict[str, Any]:
    """Broker, sandbox and gateway of their own, then the scenario (`run`: another one,
    called as `scenario` is)."""
    from bench.__main__ import prepare_database, service_env, spec

    url = f"sqlite+aiosqlite:///{work / 'bench.db'}"
    await prepare_database(url)
    sandbox_addr = f"127.0.0.1:{_free_port(socket.SOCK_STREAM)}"
    port = _free_port(socket.SOCK_DGRAM)
    async with EmbeddedBroker(port=_free_port(socket.SOCK_STREAM)) as broker:
        env = replay_env(service_env(url, broker.bootstrap, sandbox_addr, port))
        children = []
        try:
            children.append(Child("sandbox", [str(BIN / "preservarium-sandbox")], env,
                                  work / "sandbox.log"))  # fmt: skip
            await wait_for_grpc_health(sandbox_addr)
            # The gateway alone serves its metrics: they tell where a contact's time went.
            env[GATEWAY_METRICS] = str(_free_port(socket.SOCK_STREAM))
            gateway_env = {**env, "PRESERVARIUM_METRICS_PORT": env[GATEWAY_METRICS]}
            children.append(Child("gateway", [str(BIN / "preservarium-gateway")], gateway_env,
                                  work / "gateway.log"))  # fmt: skip
            await wait_for_coap(port)
            return await (run or scenario)(env, port, spec)
        finally:
            for child in reversed(children):
                child.stop()


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="preservarium-bench-replay-") as work:
        figures = asyncio.run(standalone(Path(work)))
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "replay.json").write_text(json.dumps(figures, indent=2))
    print(table(figures))
    print(json.dumps(figures, indent=2), file=sys.stderr)


if __name__ == "__main__":
    main()
