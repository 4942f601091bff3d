"""What a replay makes of one uplink: the record it publishes, and the dry run's verdict
(a field-level diff against what was published at the time)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from preservarium.contract.kinds import ErrorKind
from preservarium.contract.uplinks import RawUplink, error_object, replayed_record
from preservarium.replay.uplinks import Original
from preservarium.sandbox_answers import ParseAnswer

UNCHANGED, CHANGED = "unchanged", "changed"
NEWLY_FAILING, NEWLY_PASSING, NO_ORIGINAL = "newly_failing", "newly_passing", "no_original"
VERDICTS = (UNCHANGED, CHANGED, NEWLY_FAILING, NEWLY_PASSING, NO_ORIGINAL)
_ABSENT = object()


@dataclass(frozen=True, slots=True)
class Answer:
    """The parser's answer for one uplink: data, or a structured error."""

    device_id: str | None
    data: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    error: dict[str, Any] | None = None
    # How many times a live call waited behind background work while this one ran (the
    # sandbox's ParseResponse.live_waited): the replay's pace slows down on it.
    live_waited: int = 0

    @property
    def ok(self) -> bool:
        """True when the parser produced data."""
        return self.error is None


def answer_of(response: ParseAnswer, device_id: str | None) -> Answer:
    """A sandbox answer; `device_id` is the contact's, kept unless identify() names one."""
    error = response.error
    if error is None:
        named = device_id if response.device_id is None else response.device_id
        data = json.loads(response.data_json or b"{}")
        return Answer(named, data, list(response.warnings), live_waited=response.live_waited)
    failure = error_object(error.kind, error.message, error.line)
    return Answer(device_id, error=failure, live_waited=response.live_waited)


def refused(device_id: str | None, message: str) -> Answer:
    """A route contact whose identity the replay will not deliver."""
    return Answer(device_id, error=error_object(ErrorKind.DEVICE_MISMATCH, message, None))


def record(
    uplink: RawUplink, answer: Answer, *, replay_id: str, parser: dict[str, Any]
) -> dict[str, Any]:
    """The replayed `uplink.parsed` or `uplink.failed` record: a new id, the original's
    `received_at`, and `replay: {id, of}` naming the replay and the original uplink."""
    return replayed_record(
        received_at=uplink.received_at, device_id=answer.device_id,
        device_type=uplink.recorded.device_type, replay={"id": replay_id, "of": uplink.id},
        parser=parser, data=answer.data, warnings=answer.warnings,
        payload_b64=uplink.payload_b64, error=answer.error,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Change:
    """One field that differs: its path (`data.measurements[0].value`), before and after
    (absent on the side where the field does not exist)."""

    path: str
    before: Any = _ABSENT
    after: Any = _ABSENT

    def as_json(self) -> dict[str, Any]:
        """`{"path", "before"?, "after"?}`."""
        shown: dict[str, Any] = {"path": self.path}
        if self.before is not _ABSENT:
            shown["before"] = self.before
        if self.after is not _ABSENT:
            shown["after"] = self.after
        return shown


def changes(before: Any, after: Any, path: str = "") -> list[Change]:
    """Every leaf field that differs between two JSON values."""
    if isinstance(before, dict) and isinstance(after, dict):
        found: list[Change] = []
        for key in sorted(set(before) | set(after), key=str):
            inner = f"{path}.{key}" if path else str(key)
            found += changes(before.get(key, _ABSENT), after.get(key, _ABSENT), inner)
        return found
    if isinstance(before, list) and isinstance(after, list):
        found = []
        for index in range(max(len(before), len(after))):
            left = before[index] if index < len(before) else _ABSENT
            right = after[index] if index < len(after) else _ABSENT
            found += changes(left, right, f"{path}[{index}]")
        return found
    if before is _ABSENT and after is _ABSENT:
        return []
    same = type(before) is type(after) and before == after
    return [] if same else [Change(path, before, after)]


def _compared(record: dict[str, Any], ok: bool) -> dict[str, Any]:
    """The fields a dry run compares: what a consumer reads, not ids or versions."""
    if ok:
        keys = ("device_id", "data", "warnings")
        return {key: record.get(key, [] if key == "warnings" else None) for key in keys}
    return {"device_id": record.get("device_id"), "error": record.get("error")}


@dataclass(frozen=True, slots=True)
class Verdict:
    """The dry run's finding for one uplink."""

    uplink_id: str
    device_id: str | None
    outcome: str
    changes: list[Change] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """`{"id", "device_id", "outcome", "changes": [...]}`."""
        return {
            "id": self.uplink_id, "device_id": self.device_id, "outcome": self.outcome,
            "changes": [change.as_json() for change in self.changes],
        }  # fmt: skip


def verdict(uplink: RawUplink, original: Original | None, now: dict[str, Any]) -> Verdict:
    """How the replayed record `now` compares with what was published at the time."""
    ok_now = "error" not in now
    if original is None:
        return Verdict(uplink.id, now.get("device_id"), NO_ORIGINAL)
    outcome = UNCHANGED
    if original.ok != ok_now:
        outcome = NEWLY_PASSING if ok_now else NEWLY_FAILING
    found = changes(_compared(original.record, original.ok), _compared(now, ok_now))
    if outcome == UNCHANGED and found:
        outcome = CHANGED
    return Verdict(uplink.id, now.get("device_id"), outcome, found)
