"""Replays started through the API, run inside the gateway process.

A replay is stored (`prepare`) before the answer leaves, then continued (`resume`) by a
supervised task that outlives the request: a client that disconnects stops nothing.
At most `max_running` replays and dry runs run at once (they share the sandbox and the
broker with the contact path); one more is refused with `ReplaysBusyError`. `stop()`
cancels what runs: the use case stores each one `interrupted`, resumable with
`preservarium replay --resume ID`. A replay that fails is stored `failed` with its error
by the use case and logged here; nothing is restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from preservarium.contract.topics import Topics
from preservarium.replay.errors import ReplayError
from preservarium.replay.service import (
    Observers,
    ReplayRequest,
    Replays,
    ReplaySummary,
)
from preservarium.repositories import SQLParserRepository
from preservarium.repositories.replays import (
    FAILED,
    INTERRUPTED,
    RUNNING,
    ReplayRecord,
    SQLReplayRepository,
)
from preservarium.sandbox_client import SandboxClient
from preservarium.supervisor import Supervisor
from sqlalchemy.ext.asyncio import AsyncEngine

from preservarium_gateway.metrics import GatewayMetrics

log = logging.getLogger("preservarium.gateway.api.replays")
DEFAULT_MAX_RUNNING = 2


class ReplaysBusyError(Exception):
    """As many replays as allowed run already."""

    def __init__(self, max_running: int, *, stopping: bool = False) -> None:
        super().__init__(
            "the gateway is stopping: start the replay on another one or later"
            if stopping
            else f"{max_running} replays or dry runs are running already; try again when one ends"
        )
        self.max_running = max_running


class ReplayRuns:
    """Owns the replays running in the background; `stop()` is idempotent."""

    def __init__(
        self, *, replays: Replays, repository: SQLReplayRepository, supervisor: Supervisor,
        metrics: GatewayMetrics, max_running: int = DEFAULT_MAX_RUNNING,
    ) -> None:  # fmt: skip
        self._replays = replays
        self._repository = repository
        self._supervisor = supervisor
        self._metrics = metrics
        self._max = max_running
        self._slots = 0  # replays and dry runs holding a slot, from prepare to their end
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopped = False

    @property
    def running(self) -> list[str]:
        """The ids of the replays running in the background now."""
        return sorted(self._tasks)

    def _acquire(self) -> None:
        if self._stopped or self._slots >= self._max:
            raise ReplaysBusyError(self._max, stopping=self._stopped)
        self._slots += 1
        self._metrics.api_replays_running.set(self._slots)

    def _release(self) -> None:
        self._slots -= 1
        self._metrics.api_replays_running.set(self._slots)

    async def start(self, request: ReplayRequest) -> ReplayRecord:
        """Store the replay and run it in the background; ReplaysBusyError when full,
        ReplayError when the request cannot run (unknown type or version, bad values)."""
        self._acquire()
        try:
            record = await self._replays.prepare(request)
        except BaseException:
            self._release()
            raise
        if self._stopped:  # stop() came while it was stored: it never ran
            await self._store_ended(record.id, INTERRUPTED, "interrupted")
            self._release()
            raise ReplaysBusyError(self._max, stopping=True)
        self._tasks[record.id] = self._supervisor.spawn(
            f"replay-{record.id}", lambda: self._run(record.id)
        )
        return record

    async def _run(self, replay_id: str) -> None:
        ended = FAILED
        try:
            summary = await self._replays.resume(replay_id)
            ended = summary.replay.status
            log.info("api replay ended", extra={"replay_id": replay_id, "status": ended,
                     "counts": summary.counts})  # fmt: skip
        except asyncio.CancelledError:
            ended = INTERRUPTED
            await self._store_ended(replay_id, INTERRUPTED, "interrupted")
            raise
        except ReplayError as exc:  # stored `failed` by the use case, with its error
            log.warning("api replay failed", extra={"replay_id": replay_id, "kind": exc.kind,
                        "error": str(exc)})  # fmt: skip
        except Exception as exc:  # a bug: stored as failed so that nobody waits on it
            log.exception("api replay failed", extra={"replay_id": replay_id})
            await self._store_ended(replay_id, FAILED, f"internal error: {exc!r}")
        finally:
            self._tasks.pop(replay_id, None)
            self._metrics.api_replays.labels(ended).inc()
            self._release()

    async def _store_ended(self, replay_id: str, status: str, error: str) -> None:
        """Store how a replay ended when the use case could not (still `running`)."""
        try:
            record = await self._repository.get(replay_id)
            if record.status == RUNNING:
                await self._repository.finish(record, status, error)
        except Exception:
            log.exception("api replay: could not store how it ended",
                          extra={"replay_id": replay_id, "status": status})  # fmt: skip

    async def dry_run(
        self, request: ReplayRequest, observers: Observers, *, timeout_s: float
    ) -> ReplaySummary:
        """A dry run in the request, holding a slot, for at most `timeout_s` seconds
        (TimeoutError past it: nothing was published either way)."""
        self._acquire()
        try:
            async with asyncio.timeout(timeout_s):
                return await self._replays.dry_run(request, observers)
        finally:
            self._release()

    async def stop(self) -> None:
        """Cancel every running replay and wait until each is stored `interrupted`."""
        self._stopped = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if tasks:
            log.info("api replays interrupted", extra={"replays": len(tasks)})

    async def __aenter__(self) -> ReplayRuns:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def replay_runs(
    *, engine: AsyncEngine, sandbox: SandboxClient, bootstrap: str, topics: Topics,
    metrics: GatewayMetrics, supervisor: Supervisor, max_running: int = DEFAULT_MAX_RUNNING,
) -> ReplayRuns:  # fmt: skip
    """The API's replays on the gateway's database, sandbox client, broker and topics."""
    repository = SQLReplayRepository(engine)
    use_case = Replays(
        parsers=SQLParserRepository(engine), replays=repository, sandbox=sandbox,
        bootstrap=bootstrap, topics=topics,
    )  # fmt: skip
    return ReplayRuns(replays=use_case, repository=repository, supervisor=supervisor,
                      metrics=metrics, max_running=max_running)  # fmt: skip
