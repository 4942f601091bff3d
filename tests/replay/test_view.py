"""What `replay` shows on a terminal: the progress bar and the dry run's diffs."""

from __future__ import annotations

import io

import pytest
from preservarium.replay.outcomes import Change, Verdict
from preservarium.replay.run import Progress
from preservarium_tools.cli import replay_view
from rich.console import Console


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """stdout and stderr both one terminal, as a user's shell has them."""
    screen = io.StringIO()
    shown = Console(file=screen, force_terminal=True, width=120)
    monkeypatch.setattr(replay_view, "console", shown)
    monkeypatch.setattr(replay_view, "err_console", shown)
    return screen


def test_a_terminal_gets_a_bar_with_rate_and_eta_and_the_diffs(terminal: io.StringIO) -> None:
    collected: list[Verdict] = []
    started: list[str | None] = [None]
    with replay_view.observers(
        as_json=False, dry_run=True, collected=collected, started=started
    ) as seen:
        assert seen.progress is not None and seen.verdict is not None
        seen.progress(Progress("r1", 10, 100, {"replayed": 10}))
        seen.verdict(Verdict("u1", "dev-1", "changed", [Change("data.t", 2, 20)]))
        seen.verdict(Verdict("u2", "dev-1", "unchanged"))
        seen.progress(Progress("r1", 100, 100, {"replayed": 100}))
    text = terminal.getvalue()
    assert "uplinks/s" in text and "ETA" in text
    assert "data.t: 2 -> 20" in text and "u2" not in text
    assert collected == [] and started == ["r1"]


def test_json_collects_what_differs_and_shows_no_bar(terminal: io.StringIO) -> None:
    collected: list[Verdict] = []
    started: list[str | None] = [None]
    with replay_view.observers(
        as_json=True, dry_run=True, collected=collected, started=started
    ) as seen:
        assert seen.verdict is not None
        seen.verdict(Verdict("u1", None, "newly_failing", [Change("data", {"t": 3})]))
        seen.verdict(Verdict("u2", None, "unchanged"))
    assert [v.uplink_id for v in collected] == ["u1"]
    assert collected[0].as_json()["changes"] == [{"path": "data", "before": {"t": 3}}]
    assert terminal.getvalue() == ""


def test_tail_marks_replayed_results() -> None:
    from preservarium_tools.cli.tail_cmd import Stream, describe

    original = {
        "received_at": "2026-11-30T10:00:00.000Z", "device_id": "dev-1",
        "parser": {"name": "thermo", "version": 2}, "data": {"t": 1}, "warnings": [],
    }  # fmt: skip
    replayed = {**original, "replay": {"id": "3f9a0c41d2e7", "of": "u1"}}
    assert "replay" not in describe(Stream.parsed, original)
    assert describe(Stream.parsed, replayed).endswith("(replay 3f9a0c41d2e7 of u1)")
    failed = {"device_id": None, "error": {"kind": "timeout", "message": "m", "line": None},
              "replay": {"id": "r\x1b[2J", "of": "u2"}}  # fmt: skip
    assert describe(Stream.failed, failed).endswith("(replay r\\x1b[2J of u2)")
