"""Helpers for sandbox tests: outcomes and the process tree."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from preservarium.sandbox.v1 import sandbox_pb2 as pb
from preservarium.sandbox_answers import ParseAnswer, TrialAnswer
from preservarium.sandbox_client import error_kind_name


def outcome(response: TrialAnswer | pb.ParseResponse | ParseAnswer) -> tuple[str, Any]:
    """('ok', data) or (error kind, ScriptError)."""
    if isinstance(response, TrialAnswer):
        response = response.answer
    if isinstance(response, ParseAnswer):
        if response.error is not None:
            return response.error.kind, response.error
        return "ok", json.loads(response.data_json or b"{}")
    if response.HasField("error"):
        return error_kind_name(response.error.kind), response.error
    return "ok", json.loads(response.result.data_json or b"{}")


def children_of(pids: list[int]) -> list[int]:
    """Live processes whose parent is one of `pids` (what a worker may have left behind)."""
    found = []
    wanted = set(pids)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) in wanted and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def kill(pid: int, signum: int) -> None:
    """Send a signal from outside, as an operator or the OOM killer would."""
    os.kill(pid, signum)
