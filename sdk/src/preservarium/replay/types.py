"""The replay's vocabulary: what a caller asks for, sees while it runs, and gets back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from preservarium.replay.outcomes import Verdict
from preservarium.replay.pace import DEFAULT_RATE
from preservarium.replay.run import FROM_RAW, Progress
from preservarium.replay.window import Window
from preservarium.repositories.replays import ReplayRecord


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    """What to replay: a device type's raw uplinks in a window, through a version."""

    device_type: str
    window: Window
    version: int | None = None  # the active one
    device_id: str | None = None
    source: str = FROM_RAW
    rate: int = DEFAULT_RATE


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    """How a replay, dry run or check ended."""

    replay: ReplayRecord
    dry_run: bool
    elapsed_s: float
    offsets_by_time: bool
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Uplinks replayed per second over the whole run."""
        return self.counts.get("replayed", 0) / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Observers:
    """Callbacks for a caller that shows progress or diffs (both optional)."""

    progress: Callable[[Progress], None] | None = None
    verdict: Callable[[Verdict], None] | None = None
