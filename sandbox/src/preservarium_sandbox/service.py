"""The ParserSandbox gRPC service: Parse, FormatCommand and TestParser.

Script failures are answers; gRPC status codes are kept for infrastructure.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, Protocol

import grpc
from preservarium.contract.kinds import ErrorKind
from preservarium.errors import RepositoryError
from preservarium.sandbox.v1 import sandbox_pb2 as pb
from preservarium.sandbox.v1 import sandbox_pb2_grpc as pb_grpc

from preservarium_sandbox import wire
from preservarium_sandbox.catalog import ParserCatalog, ParserSource
from preservarium_sandbox.fair import BACKGROUND, LIVE
from preservarium_sandbox.limits import MAX_NAME_SHOWN, Limits
from preservarium_sandbox.metrics import SandboxMetrics
from preservarium_sandbox.outcome import Outcome, read_answer
from preservarium_sandbox.pool import Job, PoolClosedError, UnsendableJobError, WorkerPool
from preservarium_sandbox.quarantine import NotAdmittedError, Quarantine
from preservarium_sandbox.trials import TrialRunner
from preservarium_sandbox.worker_process import CallResult

log = logging.getLogger("preservarium.sandbox.service")
Context = grpc.aio.ServicerContext[Any, Any]


class Aborter(Protocol):
    """What the service needs of a call's context: ending it with a status code."""

    async def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        """End the call with `code` (raises)."""


class RequestRefusedError(Exception):
    """One ParseStream request ended with a status code, not the whole stream."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class _StreamRequest:
    """The Aborter of one ParseStream request: its refusal is raised, for the stream to
    answer that request alone (or end the stream, when the sandbox is stopping)."""

    async def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        raise RequestRefusedError(code, details)


# The metrics label of calls naming no active parser.
UNKNOWN_PARSER = "(unknown)"


class SandboxService(pb_grpc.ParserSandboxServicer):
    """Resolves the parser, runs the job on the pool (TestParser: on its own lane),
    answers in proto."""

    def __init__(
        self,
        *,
        catalog: ParserCatalog,
        pool: WorkerPool,
        trials: TrialRunner,
        quarantine: Quarantine,
        limits: Limits,
        metrics: SandboxMetrics,
    ) -> None:
        self._catalog = catalog
        self._pool = pool
        self._trials = trials
        self._quarantine = quarantine
        self._limits = limits
        self._metrics = metrics
        self._closing = False
        metrics.quarantined.set_function(lambda: quarantine.benched)
        self._streams: set[Callable[[], None]] = set()

    def close_streams(self) -> None:
        """End every ParseStream once its requests in flight are answered (shutdown)."""
        self._closing = True
        for finish in list(self._streams):
            finish()

    async def Parse(self, request: pb.ParseRequest, context: Context) -> Any:
        return await self._parse(request, context)

    async def ParseStream(
        self, requests: AsyncIterator[pb.ParseStreamRequest], context: Context
    ) -> AsyncIterator[pb.ParseStreamResponse]:
        """Parse requests as they come on the stream; answer each as soon as it is done.

        A message may carry several requests (a busy client's batch): each runs on its
        own and is answered alone, so a fast contact never waits for a slow one.

        At most `Limits.max_stream_in_flight` requests of a stream are being run or
        waiting to be sent back; past that the stream is not read until an answer goes
        out, so a client that floods one stream (or never reads its answers) is held back
        by gRPC flow control instead of growing the server's tasks and queues.
        """
        answers: asyncio.Queue[pb.ParseStreamResponse | BaseException | None] = asyncio.Queue()
        pending: set[asyncio.Task[None]] = set()
        slots = asyncio.Semaphore(self._limits.max_stream_in_flight)

        def finish_when_idle() -> None:
            if not pending:
                answers.put_nowait(None)

        async def answer(item: pb.ParseStreamItem) -> None:
            try:
                response = await self._parse(item.request, _StreamRequest())
            except RequestRefusedError as refused:
                if refused.code is not grpc.StatusCode.INVALID_ARGUMENT:
                    answers.put_nowait(refused)  # the sandbox is stopping: end the stream
                    return
                # Refused alone: one device's odd contact must not fail every other
                # contact in flight on the stream (the gateway shares it between devices).
                response = pb.ParseResponse()
                wire.fill_parse_answer(response, wire.failure_outcome(
                    ErrorKind.SANDBOX_UNAVAILABLE,
                    f"the sandbox refused the request: {refused.details}",
                ))  # fmt: skip
            except BaseException as exc:
                answers.put_nowait(exc)
                raise
            answers.put_nowait(pb.ParseStreamResponse(id=item.id, response=response))

        def done(task: asyncio.Task[None]) -> None:
            pending.discard(task)
            if self._closing:
                finish_when_idle()

        async def read_all() -> None:
            async for message in requests:
                if self._closing:
                    break
                items = _items_of(message)
                self._metrics.stream_batch.observe(len(items))
                for item in items:
                    await slots.acquire()  # released once its answer is taken to be sent
                    task = asyncio.create_task(answer(item))
                    pending.add(task)
                    task.add_done_callback(done)
            await asyncio.gather(*pending, return_exceptions=True)
            answers.put_nowait(None)

        reader = asyncio.create_task(read_all())
        self._streams.add(finish_when_idle)
        try:
            while (item := await answers.get()) is not None:
                if isinstance(item, RequestRefusedError):
                    await context.abort(item.code, item.details)
                if isinstance(item, BaseException):
                    raise item
                slots.release()
                yield item
        finally:
            self._streams.discard(finish_when_idle)
            reader.cancel()
            for task in list(pending):
                task.cancel()

    async def _parse(self, request: pb.ParseRequest, context: Aborter) -> pb.ParseResponse:
        started = time.perf_counter()
        version = request.version if request.HasField("version") else None
        device_type = request.contact.device_type
        if version is None:
            parser = self._catalog.lookup(device_type)
        else:
            parser = await self._pinned(context, device_type, version)
        command = request.command if request.HasField("command") else None
        background = request.background
        self._metrics.child(self._metrics.lanes, BACKGROUND if background else LIVE).inc()
        delayed = self._pool.live_delayed
        outcome = await self._guarded(
            "Parse", _label(parser),
            lambda: self._execute(
                context, device_type, parser,
                lambda: self._job(parser, request.contact, request.identify, command, background),
                version,
            ),
        )  # fmt: skip
        response = pb.ParseResponse(duration_ms=_ms(started))
        if background:  # how many live calls waited behind background work meanwhile
            response.live_waited = self._pool.live_delayed - delayed
        if parser is not None:
            _set_ref(response.parser, parser)
        wire.fill_parse_answer(response, outcome)
        return response

    async def _pinned(
        self, context: Aborter, device_type: str, version: int
    ) -> ParserSource | None:
        """A stored version asked for by number; UNAVAILABLE when the repository is away."""
        try:
            return await self._catalog.version(device_type, version)
        except RepositoryError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"parser repository: {exc}")
            raise

    async def FormatCommand(self, request: pb.FormatCommandRequest, context: Context) -> Any:
        started = time.perf_counter()
        parser = self._catalog.lookup(request.device_type)
        outcome = await self._guarded(
            "FormatCommand", _label(parser),
            lambda: self._execute(
                context, request.device_type, parser,
                lambda: self._job(parser, None, False, request.command),
            ),
        )  # fmt: skip
        response = pb.FormatCommandResponse(duration_ms=_ms(started))
        if parser is not None:
            _set_ref(response.parser, parser)
        if outcome.failure is not None:
            response.result.error.CopyFrom(wire.script_error(outcome.failure))
        elif outcome.command is not None:
            response.result.CopyFrom(wire.command_result(outcome.command))
        return response

    async def TestParser(self, request: pb.TestParserRequest, context: Context) -> Any:
        started = time.perf_counter()

        def make_job() -> Job:
            text = wire.checked_source(request.source, self._limits)
            source = ParserSource("test", 0, hashlib.sha256(text.encode("utf-8")).hexdigest(), text)
            contact = request.contact if request.HasField("contact") else None
            command = request.command if request.HasField("command") else None
            return self._job(source, contact, request.identify, command)

        outcome = await self._guarded(
            "TestParser", "(test)", lambda: self._trial(context, make_job)
        )
        response = pb.TestParserResponse(duration_ms=_ms(started))
        wire.fill_parse_answer(response, outcome)
        return response

    def _job(
        self,
        parser: ParserSource | None,
        contact: pb.Contact | None,
        identify: bool,
        command: pb.Command | None,
        background: bool = False,
    ) -> Job:
        assert parser is not None
        return Job(
            sha=parser.sha256,
            source=parser.source,
            contact=None if contact is None else wire.contact_job(contact, self._limits),
            identify=identify,
            command=None if command is None else wire.command_job(command, self._limits),
            payload=b"" if contact is None else contact.payload,
            background=background,
        )

    async def _guarded(
        self, method: str, name: str, execute: Callable[[], Awaitable[Outcome]]
    ) -> Outcome:
        started = time.perf_counter()
        outcome = await execute()
        kind = "ok" if outcome.failure is None else outcome.failure.kind.value
        metrics = self._metrics
        metrics.child(metrics.calls, method, name, kind).inc()
        metrics.child(metrics.latency, method).observe(time.perf_counter() - started)
        if outcome.failure is not None and outcome.failure.kind is ErrorKind.TIMEOUT:
            self._metrics.timeouts.labels(name).inc()
        return outcome

    async def _checked_job(self, context: Aborter, make_job: Callable[[], Job]) -> Job:
        """The job, or INVALID_ARGUMENT for a request the edge checks refuse."""
        try:
            return make_job()
        except wire.BadRequestError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise  # abort raises; this line only tells the type checker

    async def _run_on(self, context: Aborter, run: Callable[[], Awaitable[Outcome]]) -> Outcome:
        """Run on a pool, with its infrastructure failures as gRPC status codes."""
        try:
            return await run()
        except PoolClosedError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            raise
        except UnsendableJobError as exc:  # the edge checks should make this unreachable
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise

    async def _trial(self, context: Aborter, make_job: Callable[[], Job]) -> Outcome:
        job = await self._checked_job(context, make_job)
        return await self._run_on(context, lambda: self._trials.run(job))

    async def _execute(
        self,
        context: Aborter,
        name: str,
        parser: ParserSource | None,
        make_job: Callable[[], Job],
        version: int | None = None,
    ) -> Outcome:
        if parser is None:
            shown = name[:MAX_NAME_SHOWN]
            missing = (
                "no active parser" if version is None else f"no version {version} of the parser"
            )
            return wire.failure_outcome(
                ErrorKind.PARSER_NOT_FOUND, f"{missing} for device type {shown!r}"
            )
        if parser.refusal is not None:
            return Outcome(failure=parser.refusal)
        key = f"{parser.device_type}@{parser.sha256}"  # per parser version
        if left := self._quarantine.remaining(key):
            return _quarantined(name, parser, left)
        job = await self._checked_job(context, make_job)
        try:
            return await self._run_on(context, lambda: self._run_live(job, key, name, parser))
        except NotAdmittedError:
            return _quarantined(name, parser, self._quarantine.remaining(key))

    async def _run_live(self, job: Job, key: str, name: str, parser: ParserSource) -> Outcome:
        # A call its caller gave up on still runs to its answer, which counts as any other.
        def abandoned(result: CallResult) -> None:
            self._judge(result, job, key, name, parser)

        async with self._quarantine.turn(key):
            result = await self._pool.run(job, self._quarantine.admission(key), abandoned)
        return self._judge(result, job, key, name, parser)

    def _judge(
        self, result: CallResult, job: Job, key: str, name: str, parser: ParserSource
    ) -> Outcome:
        """The call's outcome, counted for the cache metrics and the quarantine."""
        outcome = read_answer(result, limits=self._limits, has_contact=job.contact is not None)
        self._metrics.child(
            self._metrics.cache, "compiled", "miss" if outcome.compiled else "hit"
        ).inc()
        kind = None if outcome.failure is None else outcome.failure.kind
        recorded = self._quarantine.record(
            key, kind, worker_died=outcome.worker_died, worker_replaced=outcome.worker_replaced
        )
        if recorded:
            self._metrics.quarantine_entries.labels(name).inc()
            log.warning(
                "parser quarantined",
                extra={"parser": name, "version": parser.version, "kind": str(kind)},
            )
        return outcome


def _items_of(message: pb.ParseStreamRequest) -> list[pb.ParseStreamItem]:
    """The requests a stream message carries: its items, or the one request of a client
    that does not batch."""
    if message.items:
        return list(message.items)
    if message.HasField("request"):
        return [pb.ParseStreamItem(id=message.id, request=message.request)]
    return []


def _quarantined(name: str, parser: ParserSource, left: float) -> Outcome:
    return wire.failure_outcome(
        ErrorKind.QUARANTINED,
        f"parser {name} v{parser.version} is quarantined for {max(left, 1):.0f} s more "
        "after repeated timeouts, memory failures or worker replacements",
    )


def _label(parser: ParserSource | None) -> str:
    """The metrics label of a call: a caller's unknown name would be a new series each."""
    return UNKNOWN_PARSER if parser is None else parser.device_type


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _set_ref(ref: pb.ParserRef, parser: ParserSource) -> None:
    ref.name, ref.version, ref.sha256 = parser.device_type, parser.version, parser.sha256
