"""`parser upload --check-against WINDOW`: a dry run of the new source over the device
type's real uplinks of WINDOW, before it is stored. A source that newly fails uplinks
that passed is refused (exit 1), unless --force."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from preservarium_tools.cli.common import err_console, fail, note, run
from preservarium_tools.cli.replay_cmd import USAGE, quiet_replay_log, replays

if TYPE_CHECKING:
    from preservarium.replay.outcomes import Verdict
    from preservarium.replay.service import ReplaySummary
    from preservarium.settings import Settings

# Uplinks named in the refusal: enough to start looking, not a flood.
SHOWN = 5


def check_against(
    config: Settings, device_type: str, source: str, since: str, *, force: bool
) -> ReplaySummary:
    """Run the check; refuse (exit 1) a regression unless `force`."""
    from preservarium.replay import ReplayError
    from preservarium.replay.service import Observers, ReplayRequest
    from preservarium.replay.window import window

    from preservarium_tools.cli.command_cmds import require_aiokafka

    require_aiokafka()
    quiet_replay_log()
    try:
        span = window(since, None, now=datetime.now(UTC))
    except ReplayError as exc:
        fail(f"--check-against: {exc}", USAGE)
    failing: list[Verdict] = []

    def seen(found: Verdict) -> None:
        if found.outcome == "newly_failing":
            failing.append(found)

    async def body() -> ReplaySummary:
        async with replays(config) as use_case:
            request = ReplayRequest(device_type=device_type, window=span)
            return await use_case.check(request, source, Observers(verdict=seen))

    summary = run(body)
    counts = summary.counts
    parts = ", ".join(f"{counts.get(k, 0)} {k.replace('_', ' ')}" for k in
                      ("unchanged", "changed", "newly_failing", "newly_passing"))  # fmt: skip
    note(f"checked against {counts.get('replayed', 0)} uplinks since {since}: {parts}")
    if failing:
        for found in failing[:SHOWN]:
            error: Any = next((c.after for c in found.changes if c.path == "error"), {})
            kind = error.get("kind", "?") if isinstance(error, dict) else "?"
            note(f"  newly failing: uplink {found.uplink_id} ({kind})")
        if not force:
            fail(f"{len(failing)} uplinks that passed fail with this source; version not stored "
                 "(--force stores it anyway)")  # fmt: skip
        err_console.print(f"warning: storing a version that newly fails {len(failing)} uplinks",
                          highlight=False)  # fmt: skip
    return summary
