"""What the sandbox's background lane does for live traffic during a replay.

On one set of services (broker, sandbox, gateway): live contacts under an open-loop load
at half the maximum live rate, in alternating segments of four modes: no replay; a
replay (at the default rate unless told) whose calls are flagged background (what `preservarium
replay` sends), its pace yielding when the sandbox says devices waited behind it
(`live_waited`) or its batches slow down; the same replay deaf to `live_waited` (the pace
before that signal: its own batches' time only); the same replay with the flag cleared,
which the sandbox serves as live calls, as it did before the lane (one queue per parser
version, no cap). Alternating short segments spreads the machine's drift over every
mode; the medians are reported, with how many uplinks each segment's replay parsed.

`python -m bench.replay_lanes` (BENCH_LANES_CYCLES, 5; BENCH_LANES_SEGMENT_S, 8;
BENCH_LANES_REPLAY_RATE, 200).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from preservarium.contract.contact import Contact
from preservarium.contract.topics import Topics
from preservarium.db.engine import make_engine
from preservarium.replay.run import Progress
from preservarium.replay.service import Observers, ReplayRequest, Replays
from preservarium.replay.window import Window
from preservarium.repositories import SQLParserRepository, SQLReplayRepository
from preservarium.sandbox_answers import ParseAnswer
from preservarium.sandbox_client import SandboxClient

from bench.processes import run_load
from bench.replay import FILL_WINDOW, LOAD, WARM_UP_S, standalone

CYCLES = int(os.environ.get("BENCH_LANES_CYCLES", "5"))
SEGMENT_S = float(os.environ.get("BENCH_LANES_SEGMENT_S", "8"))
REPLAY_RATE = int(os.environ.get("BENCH_LANES_REPLAY_RATE", "200"))
MODES = ("quiet", "lane", "own_pace", "no_lane")


class LiveCalls(SandboxClient):
    """A client that clears the background flag: replayed calls served as live ones."""

    async def parse(self, contact: Contact, **options: Any) -> ParseAnswer:
        return await super().parse(contact, **{**options, "background": False})


class OwnPace(SandboxClient):
    """A client deaf to `live_waited`: the replay's pace sees only its own batches' time."""

    async def parse(self, contact: Contact, **options: Any) -> ParseAnswer:
        return (await super().parse(contact, **options))._replace(live_waited=0)


async def scenario(env: dict[str, str], port: int, spec: Any) -> dict[str, Any]:
    """The four modes in alternating segments; each segment's figures and the medians."""
    only_m = [("m", "/m", 1)]
    started = time.time()
    fill = await run_load(spec(port, FILL_WINDOW, 10, only_m))
    window = Window(datetime.fromtimestamp(started, UTC), datetime.now(UTC))
    rate = round(fill["rate"] * LOAD, 1)

    def live(seconds: float) -> str:
        return json.dumps({**json.loads(spec(port, FILL_WINDOW, seconds, only_m)), "rate": rate})

    await run_load(live(WARM_UP_S))
    engine = make_engine(env["PRESERVARIUM_DATABASE_URL"])
    prefix = env["PRESERVARIUM_TOPIC_PREFIX"]
    topics = Topics.with_prefix(prefix)
    segments: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    address = env["PRESERVARIUM_SANDBOX_ADDR"]
    try:
        async with (
            SandboxClient(address, timeout_s=10, streams=2) as flagged,
            OwnPace(address, timeout_s=10, streams=2) as deaf,
            LiveCalls(address, timeout_s=10, streams=2) as unflagged,
        ):
            clients = {"lane": flagged, "own_pace": deaf, "no_lane": unflagged}
            for cycle in range(CYCLES):
                for mode in MODES if cycle % 2 == 0 else MODES[::-1]:
                    replays = Replays(
                        parsers=SQLParserRepository(engine), replays=SQLReplayRepository(engine),
                        sandbox=clients[mode], bootstrap=env["PRESERVARIUM_KAFKA_BOOTSTRAP"],
                        topics=topics,
                    ) if mode != "quiet" else None  # fmt: skip
                    segments[mode].append(await _segment(replays, window, live(SEGMENT_S)))
                    print(f"lanes: cycle {cycle} {mode} {segments[mode][-1]}", flush=True)
    finally:
        await engine.dispose()
    return {"live_rate": rate, "max_live_rate": fill["rate"], "segments": segments,
            "medians": {mode: _medians(rows) for mode, rows in segments.items()}}  # fmt: skip


async def _segment(replays: Replays | None, window: Window, live: str) -> dict[str, float]:
    """One segment of live load, during a replay (at REPLAY_RATE) when `replays`."""
    running = None
    progress: list[Progress] = []
    if replays is not None:
        request = ReplayRequest("efento", window, rate=REPLAY_RATE)
        running = asyncio.create_task(replays.start(request, Observers(progress.append)))
        await asyncio.sleep(2)  # the replay reads the originals first; then it parses
    try:
        got = await run_load(live)
    finally:
        if running is not None:
            running.cancel()  # stored `interrupted`; the next segment starts a new one
            await asyncio.gather(running, return_exceptions=True)
    replayed = progress[-1].counts.get("replayed", 0) if progress else 0
    return {"p50_ms": round(got["p50_ms"], 1), "p99_ms": round(got["p99_ms"], 1),
            "rate": round(got["rate"], 1), "timeouts": got["timeouts"],
            "replayed": replayed}  # fmt: skip


def _medians(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(row[key] for row in rows)
            for key in ("p50_ms", "p99_ms", "replayed")}  # fmt: skip


def main() -> None:
    # Each segment's replay is cancelled at its end: its "replay stopped" is expected.
    logging.getLogger("preservarium.replay").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="preservarium-bench-lanes-") as work:
        figures = asyncio.run(standalone(Path(work), scenario))
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "replay_lanes.json").write_text(json.dumps(figures, indent=2))
    print(f"live at {figures['live_rate']}/s (half of {figures['max_live_rate']:.0f}/s), "
          f"replays at {REPLAY_RATE}/s, medians of the segments:")  # fmt: skip
    for mode, medians in figures["medians"].items():
        print(f"  {mode}: p50 {medians['p50_ms']:.1f} ms, p99 {medians['p99_ms']:.1f} ms, "
              f"{medians['replayed']:.0f} uplinks replayed")  # fmt: skip


if __name__ == "__main__":
    main()
