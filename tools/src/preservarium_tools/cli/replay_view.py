"""What `preservarium replay` shows: a progress bar on a terminal, the dry run's diffs,
summaries, and the stored replays."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from preservarium_tools.cli.common import console, err_console, note, when

if TYPE_CHECKING:
    from preservarium.replay.outcomes import Verdict
    from preservarium.replay.run import Progress as ReplayProgress
    from preservarium.replay.service import Observers, ReplaySummary
    from preservarium.repositories.replays import ReplayRecord


@contextmanager
def observers(
    *, as_json: bool, dry_run: bool, collected: list[Verdict], started: list[str | None]
) -> Iterator[Observers]:
    """Callbacks for the use case: a progress bar with rate and ETA (on a terminal, not
    with --json), each dry-run verdict printed (or collected, with --json), and the
    replay's id kept in `started[0]` once it has one."""
    from preservarium.replay.service import Observers

    def remember(state: ReplayProgress) -> None:
        started[0] = state.replay_id

    def verdict_to(target: Console) -> Callable[[Verdict], None]:
        def verdict(found: Verdict) -> None:
            if found.outcome == "unchanged":
                return
            if as_json:
                collected.append(found)
            else:
                print_verdict(found, target)

        return verdict

    if as_json or not (console.is_terminal and err_console.is_terminal):
        yield Observers(progress=remember, verdict=verdict_to(console) if dry_run else None)
        return
    bar = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.0f} uplinks/s"), TimeElapsedColumn(),
        TextColumn("ETA"), TimeRemainingColumn(), console=err_console, transient=True,
    )  # fmt: skip
    task = bar.add_task("dry run" if dry_run else "replay", total=None, rate=0.0)

    def progress(state: ReplayProgress) -> None:
        remember(state)
        elapsed = bar.tasks[0].elapsed or 0.0
        rate = state.counts.get("replayed", 0) / elapsed if elapsed > 0 else 0.0
        bar.update(task, completed=state.done, total=state.total, rate=rate)

    with bar:  # both are the terminal: verdicts print above the bar
        yield Observers(progress=progress, verdict=verdict_to(bar.console) if dry_run else None)


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def print_verdict(found: Verdict, target: Console = console) -> None:
    """One uplink whose result is not what was published: its outcome and each field."""
    device = found.device_id or "-"
    target.print(f"[bold]{found.outcome}[/] {escape(found.uplink_id)} device {escape(device)}",
                 highlight=False, soft_wrap=True)  # fmt: skip
    for change in found.changes:
        shown = change.as_json()
        before = _shown(shown["before"]) if "before" in shown else "(absent)"
        after = _shown(shown["after"]) if "after" in shown else "(absent)"
        target.print(f"  {escape(change.path)}: {escape(before)} -> {escape(after)}",
                     highlight=False, soft_wrap=True)  # fmt: skip


def dry_run_json(summary: ReplaySummary, verdicts: list[Verdict]) -> dict[str, Any]:
    """The dry run for CI: what ran, the summary counts, every uplink that differs."""
    from preservarium.replay.report import dry_run_json as shown

    return shown(summary, verdicts)


def print_dry_run(summary: ReplaySummary) -> None:
    """The dry run's summary line, on stderr."""
    from preservarium.replay.report import SUMMARY_KEYS

    counts = summary.counts
    parts = ", ".join(f"{counts.get(k, 0)} {k.replace('_', ' ')}" for k in SUMMARY_KEYS)
    note(f"dry run of {summary.replay.device_type}: {parts}; nothing published")


def replay_json(summary: ReplaySummary) -> dict[str, Any]:
    """A finished replay for machines."""
    return {**summary.replay.as_json(), "elapsed_s": round(summary.elapsed_s, 3),
            "uplinks_per_s": round(summary.rate, 1),
            "offsets_by_time": summary.offsets_by_time}  # fmt: skip


def print_replay(summary: ReplaySummary) -> None:
    """A finished replay: the id on stdout, what it did on stderr."""
    c, replay = summary.counts, summary.replay
    note(
        f"replay {replay.id} of {replay.device_type} v{replay.version}: {c.get('replayed', 0)} "
        f"replayed ({c.get('parsed', 0)} parsed, {c.get('failed', 0)} failed), "
        f"{c.get('skipped', 0)} skipped, in {summary.elapsed_s:.1f} s ({summary.rate:.0f}/s)"
    )
    sys.stdout.write(replay.id + "\n")


def print_list(replays: list[ReplayRecord]) -> None:
    """The stored replays as a table."""
    table = Table("id", "type", "version", "status", "since", "until", "replayed", "started")
    for r in replays:
        replayed = str(r.counts.get("replayed", 0))
        table.add_row(
            r.id, r.device_type, str(r.version), r.status, when(r.since), when(r.until),
            replayed, when(r.started_at),
        )  # fmt: skip
    console.print(table)


def print_show(replay: ReplayRecord) -> None:
    """One stored replay, field by field."""
    for key, value in replay.as_json().items():
        shown = when(value) if key.endswith(("_at", "since", "until")) else value
        if isinstance(shown, dict):
            shown = _shown(shown)
        console.print(f"{key:12} {escape(str('-' if shown is None else shown))}",
                      highlight=False, soft_wrap=True)  # fmt: skip
    if replay.status != "done":
        note(f"continue it with: preservarium replay --resume {replay.id}")
