"""The replay's error: one kind per way a replay request or run can fail."""

from __future__ import annotations

from preservarium.errors import PreservariumError

# Kinds: a request that cannot run (exit 1 in the CLI) or an infrastructure failure
# (retriable, exit 2; the replay can be resumed).
BAD_WINDOW = "bad_window"
UNKNOWN_TYPE = "unknown_type"
UNKNOWN_VERSION = "unknown_version"
UNKNOWN_REPLAY = "unknown_replay"
NOT_RESUMABLE = "not_resumable"
BAD_REQUEST = "bad_request"
SANDBOX_UNAVAILABLE = "sandbox_unavailable"
KAFKA_UNAVAILABLE = "kafka_unavailable"
DATABASE_UNAVAILABLE = "database_unavailable"
QUARANTINED = "quarantined"  # resume once the quarantine ends (by itself)
REPLAY_RUNNING = "replay_running"  # another runner holds it: its message names which
LEASE_LOST = "lease_lost"  # this runner stalled past its lease, another took over
RETRIABLE_KINDS = frozenset(
    {SANDBOX_UNAVAILABLE, KAFKA_UNAVAILABLE, DATABASE_UNAVAILABLE, QUARANTINED}
)


class ReplayError(PreservariumError):
    """A replay could not start or stopped; `kind` says why, `retriable` whether trying
    again (`--resume`) can help."""

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.retriable = kind in RETRIABLE_KINDS
