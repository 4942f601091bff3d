"""/api/v1/replays: start a replay or a dry run, list and show replays (the use case of
`preservarium replay`, with the same checks and the same stored replays).

A replay is stored before the answer (`202` with its id and a Location) and runs in the
gateway's background (`ReplayRuns`); `GET /replays/{id}` shows its progress. A dry run
publishes nothing and runs within the request, bounded in time; its answer lists the
uplinks whose result differs, at most `limit` of them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from preservarium.ids import is_device_id, is_device_type
from preservarium.replay import errors as kinds
from preservarium.replay.errors import ReplayError
from preservarium.replay.outcomes import UNCHANGED, Verdict
from preservarium.replay.pace import DEFAULT_RATE
from preservarium.replay.report import dry_run_json, progress_json
from preservarium.replay.service import Observers, ReplayRequest
from preservarium.replay.window import window
from preservarium.repositories import SQLReplayRepository
from preservarium.repositories.replays import ReplayRecord
from preservarium.usecases.errors import invalid
from preservarium.usecases.jsonable import json_object, jsonable
from pydantic import BaseModel, Field

from preservarium_gateway.api.auth import READ, WRITE
from preservarium_gateway.api.context import context_of
from preservarium_gateway.api.observe import note
from preservarium_gateway.api.problems import Problem
from preservarium_gateway.api.replay_runs import ReplayRuns, ReplaysBusyError

router = APIRouter(prefix="/replays", tags=["replays"])
BUSY_RETRY_AFTER_S = 30
# A replay error's kind: (status, problem kind). Bad windows are 422 invalid-input.
_STATUS = {
    kinds.BAD_REQUEST: (422, "invalid-input"),
    kinds.UNKNOWN_TYPE: (404, "unknown-type"),
    kinds.UNKNOWN_VERSION: (404, "unknown-version"),
    kinds.UNKNOWN_REPLAY: (404, "not-found"),
    kinds.SANDBOX_UNAVAILABLE: (503, "sandbox-unavailable"),
    kinds.KAFKA_UNAVAILABLE: (503, "kafka-unavailable"),
    kinds.DATABASE_UNAVAILABLE: (503, "database-unavailable"),
    kinds.QUARANTINED: (503, "quarantined"),
}


class NewReplay(BaseModel):
    """A replay to run, as `preservarium replay TYPE [--version N] [--since T] ...`."""

    device_type: str
    version: int | None = Field(None, ge=1, description="A stored version (default: active).")
    since: str | None = Field(None, description="RFC 3339, or back from now: 30m, 2h, 7d "
                              "(default 24h).")  # fmt: skip
    until: str | None = Field(None, description="As since (default now).")
    device_id: str | None = Field(None, description="One device only.")
    source: Literal["raw", "failed"] = Field(
        "raw", description="raw: every uplink; failed: those whose parse failed."
    )
    rate: int | None = Field(None, ge=1, le=100_000, description="Uplinks per second at most "
                             f"(default {DEFAULT_RATE}).")  # fmt: skip
    dry_run: bool = Field(False, description="Publish nothing: diff each result instead.")


def _runs(request: Request) -> ReplayRuns:
    runs: ReplayRuns = request.app.state.replay_runs
    return runs


def _request(body: NewReplay) -> ReplayRequest:
    """The use case's request, checked as the CLI checks its arguments."""
    if not is_device_type(body.device_type):
        raise invalid("device_type", f"invalid device type {body.device_type!r}: use 1 to 64 "
                      "characters of A-Z a-z 0-9 . _ -")  # fmt: skip
    if body.device_id is not None and not is_device_id(body.device_id):
        raise invalid("device_id", f"invalid device id {body.device_id!r}: use 1 to 64 "
                      "characters of A-Z a-z 0-9 . _ : -")  # fmt: skip
    try:
        span = window(body.since, body.until, now=datetime.now(UTC))
    except ReplayError as exc:
        field = "until" if str(exc).startswith("--until") and body.until else "since"
        message = str(exc).replace("--since", "since").replace("--until", "until")
        raise invalid(field, message) from None
    return ReplayRequest(
        device_type=body.device_type, window=span, version=body.version,
        device_id=body.device_id, source=body.source, rate=body.rate or DEFAULT_RATE,
    )  # fmt: skip


def _problem(exc: ReplayError) -> Problem:
    status, kind = _STATUS.get(exc.kind, (500, "internal"))
    return Problem(status, kind, " ".join(str(exc).split()), reason=exc.kind)


def replay_json(replay: ReplayRecord) -> dict[str, Any]:
    """A stored replay with its progress (raw records read of those to read)."""
    return json_object({**replay.as_json(), "progress": progress_json(replay)})


@router.get("", dependencies=[READ], summary="List replays, newest first")
async def list_replays(
    request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[dict[str, Any]]:
    """Replays started here or by `preservarium replay`, as `replay list` shows them."""
    found = await SQLReplayRepository(context_of(request).engine).list(limit=limit)
    return [replay_json(replay) for replay in found]


@router.get("/{replay_id}", dependencies=[READ], summary="Show a replay")
async def show(request: Request, replay_id: str) -> dict[str, Any]:
    """One replay: what it replays, how far it got (`progress`, `counts`), how it ended
    (`status`: running, done, failed with `error`, interrupted)."""
    return replay_json(await SQLReplayRepository(context_of(request).engine).get(replay_id))


@router.post(
    "", status_code=202, dependencies=[WRITE], summary="Start a replay or run a dry run",
    responses={200: {"description": "The dry run's summary and diffs"}},
)  # fmt: skip
async def start(
    request: Request,
    body: NewReplay,
    limit: Annotated[int, Query(ge=0, le=1000, description="Dry run: uplinks listed.")] = 100,
) -> JSONResponse:
    """A replay: stored, answered `202` with its id (Location: its status), then run in
    the background; results go to uplink.parsed / uplink.failed stamped `replay: {id,
    of}`. With `dry_run`, nothing is published: `200` with the summary and the uplinks
    whose result differs (at most `limit`; `uplinks_truncated` says when more did)."""
    replay_request = _request(body)
    note(request.state, device_type=body.device_type, dry_run=body.dry_run)
    try:
        if body.dry_run:
            return JSONResponse(await _dry_run(request, replay_request, limit))
        record = await _runs(request).start(replay_request)
    except ReplaysBusyError as exc:
        raise Problem(429, "replays-busy", str(exc), headers={
            "Retry-After": str(BUSY_RETRY_AFTER_S)}) from exc  # fmt: skip
    except ReplayError as exc:
        raise _problem(exc) from exc
    note(request.state, replay_id=record.id, version=record.version)
    location = f"{request.url.path.rstrip('/')}/{record.id}"
    return JSONResponse(replay_json(record), status_code=202, headers={"Location": location})


async def _dry_run(request: Request, replay_request: ReplayRequest, limit: int) -> Any:
    limits = context_of(request).limits
    listed: list[Verdict] = []
    differing = [0]

    def keep(found: Verdict) -> None:
        if found.outcome == UNCHANGED:
            return
        differing[0] += 1
        if len(listed) < min(limit, limits.dry_run_diffs_max):
            listed.append(found)

    try:
        summary = await _runs(request).dry_run(
            replay_request, Observers(verdict=keep), timeout_s=limits.dry_run_timeout_s
        )
    except TimeoutError as exc:
        raise Problem(422, "dry-run-too-long", f"the dry run did not end within "
                      f"{limits.dry_run_timeout_s:g} s (nothing was published): narrow the "
                      "window (since, until, device_id) or run `preservarium replay TYPE "
                      "--dry-run` from a shell") from exc  # fmt: skip
    shown = dry_run_json(summary, listed)
    return jsonable({**shown, "uplinks_truncated": differing[0] > len(listed)})
