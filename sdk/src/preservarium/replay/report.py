"""How a finished dry run or replay reads for machines: the CLI's `--json` and the API's
answers share these shapes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the shapes only: importing this module reads no topic
    from preservarium.replay.outcomes import Verdict
    from preservarium.replay.types import ReplaySummary
    from preservarium.repositories.replays import ReplayRecord

SUMMARY_KEYS = ("unchanged", "changed", "newly_failing", "newly_passing", "no_original")
COUNT_KEYS = ("scanned", "matched", "replayed", "parsed", "failed", "skipped", "unreadable")


def dry_run_json(summary: ReplaySummary, verdicts: list[Verdict]) -> dict[str, Any]:
    """The dry run: what ran, the summary counts, the uplinks that differ (`verdicts`)."""
    replay = summary.replay
    return {
        "dry_run": True, "device_type": replay.device_type,
        "version": replay.version or None, "since": replay.since, "until": replay.until,
        "summary": {key: summary.counts.get(key, 0) for key in SUMMARY_KEYS},
        "counts": {key: summary.counts.get(key, 0) for key in COUNT_KEYS},
        "offsets_by_time": summary.offsets_by_time, "elapsed_s": round(summary.elapsed_s, 3),
        "uplinks": [found.as_json() for found in verdicts],
    }  # fmt: skip


def progress_json(replay: ReplayRecord) -> dict[str, int]:
    """How far a stored replay got: raw records read (`done`) of those to read (`total`),
    over every partition of its window; both 0 before its positions are known."""
    spans = replay.positions.values()
    total = sum(max(span.end - span.start, 0) for span in spans)
    done = sum(min(max(span.next - span.start, 0), max(span.end - span.start, 0)) for span in spans)
    return {"done": done, "total": total}
