"""Replay benchmark: how fast `preservarium replay` goes, and what it costs live traffic.

1. Fill `uplink.raw` with Efento contacts through the full path (gateway, sandbox,
   broker), as fast as it goes (a closed loop): also the maximum live rate.
2. Replay that window with no rate bound: replay throughput (uplinks/s).
3. Live p50/p99 at half the maximum live rate (an open loop: contacts arrive on a
   schedule, whatever the answers, as independent devices send them), in alternating
   segments: with no replay, and while a replay runs at the default rate (200/s). The
   order flips every cycle and the medians are reported, so the machine's drift over
   the run hits both alike (one window of each, in a fixed order, told more about the
   machine than about the replay). Each "during" segment starts its own replay of the
   window and begins once that replay has published its first batch (its start, reading
   what was published at the time, is not what a long replay costs devices); it is
   interrupted at the segment's end. Its rate while devices ran is read from its
   checkpoints.

A closed loop would measure saturation instead: its window of requests is always full,
so any extra work (a replay) shows up as a longer queue, not as what a device sees.

`python -m bench.replay` runs it alone (with its own broker, sandbox and gateway);
`make bench` runs it after the other scenarios. Durations: BENCH_REPLAY_FILL_S,
BENCH_REPLAY_LIVE_S (each segment); cycles: BENCH_REPLAY_CYCLES (4); the live load's
share of the maximum: BENCH_REPLAY_LOAD (0.5).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import statistics
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
LIVE_S = float(os.environ.get("BENCH_REPLAY_LIVE_S", "8"))
CYCLES = int(os.environ.get("BENCH_REPLAY_CYCLES", "4"))
LOAD = float(os.environ.get("BENCH_REPLAY_LOAD", "0.5"))
# The fill's in-flight window: enough to keep the gateway busy (its rate is the maximum).
FILL_WINDOW = 32
DEFAULT_RATE = "200"
# The gateway's metrics port, in the scenario's environment (the bench's own key).
GATEWAY_METRICS = "BENCH_GATEWAY_METRICS_PORT"
WARM_UP_S = 3.0
MODES = ("without", "during")
# A segment's replay that has not published its first batch by then is not coming.
FIRST_BATCH_S = 60.0


def _at(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


def _replay_command(since: float, until: float, rate: str) -> list[str]:
    return [str(BIN / "preservarium"), "replay", "efento", "--since", _at(since),
            "--until", _at(until), "--rate", rate, "--json"]  # fmt: skip


async def _replay(env: dict[str, str], since: float, until: float, rate: str) -> Any:
    """`preservarium replay efento --json` over [since, until]; its JSON summary."""
    process = await asyncio.create_subprocess_exec(
        *_replay_command(since, until, rate),
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
    print(f"replay: live at {live_rate}/s, {CYCLES} cycles of {LIVE_S:g} s without and "
          f"during a replay at {DEFAULT_RATE}/s ...", flush=True)  # fmt: skip
    # A first open-loop run is slower at its start (new endpoints, caches, the broker
    # after the replay's writes): warm up, so that the first segment is not its first run.
    await run_load(_open_loop(spec(gateway_port, FILL_WINDOW, WARM_UP_S, only_m), live_rate))
    stages = Stages(int(env[GATEWAY_METRICS]))
    segments: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    replays = SegmentReplays(env, _replay_command(fill_start, fill_end, DEFAULT_RATE))
    try:
        for cycle in range(CYCLES):
            for mode in MODES if cycle % 2 == 0 else MODES[::-1]:
                if mode == "during":
                    row = await replays.during(lambda: stages.around(run_load(live)))
                else:
                    row = _latency(await stages.around(run_load(live)))
                row["stages_p99_ms"] = stages.p99s[-1]
                segments[mode].append(row)
                print(f"replay: cycle {cycle} {mode}: p50 {row['p50_ms']:.2f} ms, "
                      f"p99 {row['p99_ms']:.2f} ms", flush=True)  # fmt: skip
    finally:
        await replays.close()
    without, during = (_medians(segments[mode]) for mode in MODES)
    rates = [row["replay_per_s"] for row in segments["during"]]
    return {
        "fill": _latency(fill),
        "max_live_rate": fill["rate"],
        "unbounded": {
            "replayed": unbounded["counts"].get("replayed", 0),
            "uplinks_per_s": unbounded["uplinks_per_s"],
            "offsets_by_time": unbounded["offsets_by_time"],
        },
        "at_default_rate": {
            # While live contacts ran: the median of the segments, from the checkpoints.
            "uplinks_per_s": statistics.median(rates),
            "per_segment": rates,
            # False: a replay ended before its segment did (that segment mixes both).
            "outlasted_live": all(row["outlasted_live"] for row in segments["during"]),
        },
        "live_rate": live_rate,
        "cycles": CYCLES,
        "segment_s": LIVE_S,
        "live_without": without,
        "live_during": during,
        "live_p99_ratio": during["p99_ms"] / without["p99_ms"] if without["p99_ms"] else None,
        "segments": segments,
    }


class SegmentReplays:
    """Replays at the default rate, one per "during" segment, each in its own process
    (`preservarium replay`, as an operator runs it), interrupted as its segment ends; how
    far each got is read from the checkpoints it stores."""

    def __init__(self, env: dict[str, str], command: list[str]) -> None:
        from preservarium.db.engine import make_engine
        from preservarium.repositories import SQLReplayRepository

        self.env = {**os.environ, **env}
        self.command = command
        self.engine = make_engine(env["PRESERVARIUM_DATABASE_URL"])
        self.stored = SQLReplayRepository(self.engine)

    async def close(self) -> None:
        await self.engine.dispose()

    async def during(self, window: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """`window()` (a live load) while a new replay runs: its latency, and the
        replay's rate meanwhile."""
        known = {replay.id for replay in await self.stored.list(limit=1000)}
        with tempfile.TemporaryFile() as errors:
            process = await asyncio.create_subprocess_exec(
                *self.command, env=self.env, stdout=subprocess.DEVNULL, stderr=errors
            )
            try:
                replay_id, first = await self._first_batch(process, known, errors)
                started = time.monotonic()
                result = await window()
                seconds = time.monotonic() - started
                last = (await self.stored.get(replay_id)).counts.get("replayed", 0)
                outlasted = process.returncode is None
            finally:
                if process.returncode is None:
                    process.send_signal(signal.SIGINT)  # stored `interrupted`
                await process.wait()
        return {**_latency(result), "replay_per_s": round((last - first) / seconds, 1),
                "outlasted_live": outlasted}  # fmt: skip

    async def _first_batch(
        self, process: asyncio.subprocess.Process, known: set[str], errors: Any
    ) -> tuple[str, int]:
        """The new replay's id once it has published a batch, and how many it had."""
        deadline = time.monotonic() + FIRST_BATCH_S
        while time.monotonic() < deadline:
            if process.returncode is not None:
                errors.seek(0)
                said = errors.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"replay ended ({process.returncode}) before it began: {said}")
            for replay in await self.stored.list(limit=10):
                replayed = replay.counts.get("replayed", 0)
                if replay.id not in known and replayed > 0:
                    return replay.id, replayed
            await asyncio.sleep(0.1)
        raise RuntimeError(f"no replayed uplink within {FIRST_BATCH_S:g} s")


LATENCY = ("rate", "p50_ms", "p99_ms")


def _medians(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The segments' medians (latency, rate, each stage's p99); timeouts summed."""
    stages: dict[str, float | None] = {}
    for stage in STAGES:
        found = [row["stages_p99_ms"][stage] for row in rows]
        known = [ms for ms in found if ms is not None]
        stages[stage] = statistics.median(known) if known else None
    return {
        **{key: statistics.median(row[key] for row in rows) for key in LATENCY},
        "p99_ms_each": [row["p99_ms"] for row in rows],
        "timeouts": sum(row["timeouts"] for row in rows),
        "stages_p99_ms": stages,
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
    cycles = figures.get("cycles", 1)
    return "\n".join([
        f"replay unbounded: {u['replayed']} uplinks at {u['uplinks_per_s']:.0f}/s",
        f"replay at {DEFAULT_RATE}/s while live contacts ran: {d['uplinks_per_s']:.0f} uplinks/s",
        f"live at {rate:.0f}/s (open loop), medians of {cycles} segments each:",
        f"  no replay: p50 {q['p50_ms']:.2f} ms, p99 {q['p99_ms']:.2f} ms "
        f"(each: {_each(q)})",
        f"  during a replay: p50 {live['p50_ms']:.2f} ms, p99 {live['p99_ms']:.2f} ms "
        f"(each: {_each(live)})",
        *_stages(figures),
    ])  # fmt: skip


def _each(medians: dict[str, Any]) -> str:
    return ", ".join(f"{ms:.1f}" for ms in medians.get("p99_ms_each", []))


def _stages(figures: dict[str, Any]) -> list[str]:
    """A line per mode: each gateway stage's p99 (bucket bound, ms; the segments' median)."""
    return [
        f"gateway stages' p99 {mode} the replay: "
        + ", ".join(f"{stage} <= {ms:g} ms" for stage, ms in medians["stages_p99_ms"].items()
                    if ms is not None)
        for mode, medians in (("without", figures["live_without"]),
                              ("during", figures["live_during"]))
    ]  # fmt: skip


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
