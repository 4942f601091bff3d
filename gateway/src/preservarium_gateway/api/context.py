"""What the API's routes work with, passed in once by whoever builds the app."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request
from preservarium.contract.topics import Topics
from preservarium.identity import SecretBox
from preservarium.sandbox_client import SandboxClient
from preservarium.usecases.commands import Publish
from sqlalchemy.ext.asyncio import AsyncEngine

from preservarium_gateway.api.replay_runs import DEFAULT_MAX_RUNNING, ReplayRuns
from preservarium_gateway.metrics import GatewayMetrics


@dataclass(frozen=True, slots=True)
class ApiLimits:
    """Bounds of the API, with named defaults."""

    page_max: int = 1000
    page_default: int = 100
    # Server-Sent Event streams open at once (each holds a Kafka consumer), and how many
    # records one stream may have waiting for a slow client before it is closed.
    streams_max: int = 32
    stream_backlog: int = 1000
    heartbeat_s: float = 15.0
    # How often an open stream checks that its token is still active (else it ends).
    token_recheck_s: float = 5.0
    # GET /uplinks reads at most this many of the newest raw records per partition.
    uplinks_scan: int = 5000
    uplinks_max: int = 100
    # Any request body (JSON: parser source and examples the largest); an import file's.
    body_max_bytes: int = 2 * 1024 * 1024
    import_max_bytes: int = 16 * 1024 * 1024
    parser_source_max_bytes: int = 256 * 1024
    kafka_timeout_s: float = 5.0
    # Replays and dry runs running at once; a dry run answers within this many seconds
    # and lists at most this many uplinks whose result differs.
    replays_max: int = DEFAULT_MAX_RUNNING
    dry_run_timeout_s: float = 60.0
    dry_run_diffs_max: int = 1000


@dataclass(frozen=True, slots=True)
class ApiContext:
    """The API's collaborators: the database, secrets, Kafka, the sandbox, metrics."""

    engine: AsyncEngine
    secrets: SecretBox
    publish: Publish
    topics: Topics
    kafka_bootstrap: str
    sandbox: SandboxClient
    metrics: GatewayMetrics
    limits: ApiLimits = field(default_factory=ApiLimits)
    # The gateway passes its own (run under its supervisor, stopped with it); without
    # one, the app makes one (`app.state.replay_runs`), to be stopped by its owner.
    replay_runs: ReplayRuns | None = None


def context_of(request: Request) -> ApiContext:
    """The context the app was built with, as a route reads it."""
    context: ApiContext = request.app.state.context
    return context
