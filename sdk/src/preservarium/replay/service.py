"""The replay use case: start a replay (or a dry run, or a check of an unsaved source),
resume one, read their status. The CLI calls it; an API route can call it the same way.

Start offsets, the index of originals, and (for a real replay) the stored state come
first; then one pass over the raw records (`run.ReplayPass`). A real replay is stored
before its first record is read, checkpointed after every published batch, and ends
`done`, `failed` (with the error) or `interrupted` (cancelled): `resume` continues it.
A run holds its replay with a lease (`lease.ReplayLease`): a second runner of the same
replay is refused while the first one's lease lasts, and takes over once it expired.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from preservarium.contract.topics import Topics
from preservarium.errors import NotFoundError, RepositoryError
from preservarium.replay import originals, topics
from preservarium.replay.errors import (
    BAD_REQUEST,
    DATABASE_UNAVAILABLE,
    KAFKA_UNAVAILABLE,
    LEASE_LOST,
    NOT_RESUMABLE,
    UNKNOWN_REPLAY,
    UNKNOWN_TYPE,
    UNKNOWN_VERSION,
    ReplayError,
)
from preservarium.replay.lease import LEASE_S, ReplayLease
from preservarium.replay.pace import Pace
from preservarium.replay.run import FROM_FAILED, FROM_RAW, ReplayPass, Targets
from preservarium.replay.runners import Runner, SourceRunner, VersionRunner
from preservarium.replay.types import Observers, ReplayRequest, ReplaySummary
from preservarium.replay.window import Window
from preservarium.repositories import SQLParserRepository
from preservarium.repositories.replays import (
    DONE,
    FAILED,
    INTERRUPTED,
    ReplayRecord,
    SQLReplayRepository,
)
from preservarium.sandbox_client import SandboxClient
from preservarium.supervisor import Supervisor

# The use case with the vocabulary its callers need (defined in `types`).
__all__ = ["Observers", "ReplayRequest", "ReplaySummary", "Replays"]

log = logging.getLogger("preservarium.replay")
DRY_RUN_ID = "dry-run"


class Replays:
    """Starts, resumes and reports replays."""

    def __init__(
        self,
        *,
        parsers: SQLParserRepository,
        replays: SQLReplayRepository,
        sandbox: SandboxClient,
        bootstrap: str,
        topics: Topics,
        lease_s: float = LEASE_S,
        supervisor: Supervisor | None = None,
    ) -> None:
        """`lease_s`: how long a run's hold on its replay lasts unless renewed (a
        crashed runner's replay can be taken over after that); the renewal runs under
        `supervisor`."""
        self._parsers = parsers
        self._replays = replays
        self._sandbox = sandbox
        self._bootstrap = bootstrap
        self._topics = topics
        self._lease_s = lease_s
        self._supervisor = supervisor

    async def status(self, replay_id: str) -> ReplayRecord:
        """One replay as stored; ReplayError (unknown_replay) if there is none."""
        try:
            return await self._replays.get(replay_id)
        except NotFoundError as exc:
            raise ReplayError(f"no replay has id {replay_id!r}", kind=UNKNOWN_REPLAY) from exc

    async def recent(self, *, limit: int = 100) -> list[ReplayRecord]:
        """The most recent replays, newest first."""
        return await self._replays.list(limit=limit)

    async def prepare(self, request: ReplayRequest) -> ReplayRecord:
        """Check and store a replay without running it (status `running`, no positions
        yet): an API route answers with it at once and runs `resume(id)` in the
        background, its progress readable with `status(id)`."""
        plan = await self._replays.create(await self._plan(request, secrets.token_hex(6)))
        log.info("replay created", extra={"replay_id": plan.id, "parser": plan.device_type,
                 "version": plan.version})  # fmt: skip
        return plan

    async def start(
        self, request: ReplayRequest, observers: Observers = Observers()
    ) -> ReplaySummary:
        """Replay the request's uplinks and publish the results; stored, resumable."""
        return await self._stored_run(await self.prepare(request), observers)

    async def resume(
        self, replay_id: str, observers: Observers = Observers(), *, rate: int | None = None
    ) -> ReplaySummary:
        """Continue a replay that did not finish, without publishing any uplink twice
        (at `rate` per second when given, else at its own). Refused (`replay_running`)
        while another runner holds it; taken over once that runner's lease expired."""
        plan = await self.status(replay_id)
        if plan.status == DONE:
            raise ReplayError(f"replay {replay_id} is done already", kind=NOT_RESUMABLE)
        await self._version(plan.device_type, plan.version)
        log.info("replay resumed", extra={"replay_id": plan.id})
        return await self._stored_run(plan, observers, rate=rate)

    async def dry_run(
        self, request: ReplayRequest, observers: Observers = Observers()
    ) -> ReplaySummary:
        """Compare what the version produces now with what was published; publish nothing."""
        plan = await self._plan(request, DRY_RUN_ID)
        runner = VersionRunner(self._sandbox, device_type=plan.device_type, version=plan.version)
        return await self._run(plan, runner, observers, lease=None)

    async def check(
        self, request: ReplayRequest, source: str, observers: Observers = Observers()
    ) -> ReplaySummary:
        """A dry run of an unsaved source (before it is stored as a version)."""
        plan = await self._plan(request, DRY_RUN_ID, known_type=False)
        runner = SourceRunner(self._sandbox, device_type=plan.device_type, source=source)
        return await self._run(plan, runner, observers, lease=None)

    async def _stored_run(
        self, plan: ReplayRecord, observers: Observers, *, rate: int | None = None
    ) -> ReplaySummary:
        lease = ReplayLease(
            self._replays, plan.id, lease_s=self._lease_s, supervisor=self._supervisor
        )
        # As stored once held: a previous runner may have gone further meanwhile.
        plan = await lease.acquire()
        if rate is not None:
            plan = dataclasses.replace(plan, rate=rate)
        runner = VersionRunner(self._sandbox, device_type=plan.device_type, version=plan.version)
        async with lease.kept():
            return await self._run(plan, runner, observers, lease=lease)

    async def _plan(
        self, request: ReplayRequest, replay_id: str, *, known_type: bool = True
    ) -> ReplayRecord:
        if request.source not in (FROM_RAW, FROM_FAILED):
            raise ReplayError(
                f"--from must be raw or failed, not {request.source!r}", kind=BAD_REQUEST
            )
        if request.rate < 1:
            raise ReplayError("--rate must be at least 1 uplink per second", kind=BAD_REQUEST)
        version = 0
        if known_type or request.version is not None:
            version = await self._version(request.device_type, request.version)
        return ReplayRecord(
            id=replay_id, device_type=request.device_type, version=version,
            since=request.window.since, until=request.window.until, device_id=request.device_id,
            source=request.source, rate=request.rate,
        )  # fmt: skip

    async def _version(self, device_type: str, version: int | None) -> int:
        """The stored version to run (the active one when None), checked to exist."""
        try:
            if version is None:
                return (await self._parsers.get_parser_for_sensor(device_type)).version
            return (await self._parsers.get_version(device_type, version)).version
        except NotFoundError as exc:
            summaries = {s.device_type for s in await self._parsers.list_parsers()}
            if device_type not in summaries:
                raise ReplayError(
                    f"no parser for device type {device_type!r}", kind=UNKNOWN_TYPE
                ) from exc
            what = "no active version" if version is None else f"no version {version}"
            raise ReplayError(f"{device_type} has {what}", kind=UNKNOWN_VERSION) from exc

    async def _attributes(self) -> dict[str, str]:
        """Every registered device's attributes, as the gateway's directory holds them."""
        from preservarium.attributes import encode_attributes
        from preservarium.repositories import SQLDeviceRepository

        devices = await SQLDeviceRepository(self._replays.engine).list()
        return {d.id: encode_attributes(d.attributes) for d in devices if d.attributes}

    async def _run(
        self, plan: ReplayRecord, runner: Runner, observers: Observers, *,
        lease: ReplayLease | None,
    ) -> ReplaySummary:  # fmt: skip
        """One pass; stored (checkpointed, resumable) when it runs under a `lease`."""
        stored = lease is not None
        loop = asyncio.get_running_loop()
        started = loop.time()
        window = Window(plan.since, plan.until)
        replay_pass: ReplayPass | None = None
        try:
            index = await originals.index(
                self._bootstrap, parsed_topic=self._topics.parsed, failed_topic=self._topics.failed,
                device_type=plan.device_type, since_ms=window.since_ms,
                # A resumed replay looks for its own results, published since it began.
                until_ms=window.until_ms if not plan.positions else None,
                replay_id=plan.id if stored else None, whole=not stored,
            )  # fmt: skip
            reader = topics.consumer(self._bootstrap)
            producer = _producer(self._bootstrap) if stored else None
            try:  # both stopped even when cancelled while the reader starts
                await reader.start()
                trusted = True
                if not plan.positions:
                    positions, trusted = await topics.spans(
                        reader, self._topics.raw, window.since_ms, window.until_ms
                    )
                    plan = plan.moved(positions, plan.counts)
                    if lease is not None:
                        await lease.checkpoint(plan)
                if producer is not None:
                    await topics.ensure(self._bootstrap, (self._topics.parsed, self._topics.failed))
                    await producer.start()
                replay_pass = ReplayPass(
                    plan, runner=runner, originals=index, pace=Pace(plan.rate),
                    producer=producer, targets=Targets(self._topics.parsed, self._topics.failed),
                    repository=lease,
                    attributes=await self._attributes(),
                    on_progress=observers.progress, on_verdict=observers.verdict,
                )  # fmt: skip
                plan = await replay_pass.run(reader, self._topics.raw)
            finally:
                await reader.stop()
                if producer is not None:
                    await producer.stop()
        except (KafkaError, OSError) as exc:
            failure = ReplayError(f"Kafka at {self._bootstrap}: {exc}", kind=KAFKA_UNAVAILABLE)
            await self._ended(replay_pass, plan, lease, FAILED, str(failure))
            raise _resumable(failure, plan, stored) from exc
        except RepositoryError as exc:  # a checkpoint could not be stored
            failure = ReplayError(f"database: {exc}", kind=DATABASE_UNAVAILABLE)
            with contextlib.suppress(RepositoryError):
                await self._ended(replay_pass, plan, lease, FAILED, str(failure))
            raise _resumable(failure, plan, stored) from exc
        except ReplayError as exc:
            await self._ended(replay_pass, plan, lease, FAILED, str(exc))
            if exc.kind == LEASE_LOST:
                raise  # another runner continues it: no hint to resume
            raise _resumable(exc, plan, stored) from exc
        except asyncio.CancelledError:
            await self._ended(replay_pass, plan, lease, INTERRUPTED, "interrupted")
            raise
        if lease is not None:
            await lease.finish(plan, DONE)
            plan = await self._replays.get(plan.id)
            log.info("replay done", extra={"replay_id": plan.id, "counts": plan.counts})
        return ReplaySummary(plan, not stored, loop.time() - started, trusted, dict(plan.counts))

    async def _ended(
        self, replay_pass: ReplayPass | None, plan: ReplayRecord, lease: ReplayLease | None,
        status: str, error: str,
    ) -> None:  # fmt: skip
        """Store how a replay stopped, with the positions of its last checkpoint."""
        if lease is None:
            return
        last = plan if replay_pass is None else replay_pass.replay
        log.warning("replay stopped", extra={"replay_id": plan.id, "status": status,
                    "error": error})  # fmt: skip
        await lease.finish(last, status, error)


def _resumable(error: ReplayError, plan: ReplayRecord, stored: bool) -> ReplayError:
    """The error, saying how to continue the stored replay it stopped."""
    if not stored:
        return error
    hint = f"{error}; replay {plan.id} stopped: continue it with --resume {plan.id}"
    return ReplayError(hint, kind=error.kind)


def _producer(bootstrap: str) -> AIOKafkaProducer:
    """acks=all: a batch is checkpointed only once every result of it is durable."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, client_id="preservarium-replay",
        request_timeout_ms=15_000,
    )  # fmt: skip
