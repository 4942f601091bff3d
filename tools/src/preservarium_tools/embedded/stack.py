"""The embedded stack: database, broker, sandbox, shipped parsers and gateway, in one object.

`EmbeddedStack.start()` brings the parts up in dependency order and waits for each to be
ready; `wait()` returns only by raising, when a service exits by itself; `stop()` stops
the services in reverse order and is idempotent. A failed start stops whatever it started.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from preservarium.children import Child, ChildProcess
from preservarium.db.engine import make_engine
from preservarium.db.migrate import upgrade
from preservarium.errors import RepositoryError
from preservarium.lifecycle import AsyncLifecycle
from preservarium.sandbox_client import SandboxClient, SandboxUnavailableError
from preservarium.settings import parse_host_port
from sqlalchemy.exc import SQLAlchemyError

from preservarium_tools.embedded import readiness
from preservarium_tools.embedded.broker import BrokerError
from preservarium_tools.embedded.broker_child import BrokerChild
from preservarium_tools.embedded.config import BROKER_HOST, PROGRAMS, Service, StackConfig
from preservarium_tools.embedded.errors import ChildExitedError, StackError, StackSetupError
from preservarium_tools.embedded.ports import ensure_free
from preservarium_tools.embedded.shipped import (
    ParserState,
    RefusedParser,
    describe_parser,
    publish_shipped,
    read_parsers,
)


async def all_of(*steps: Coroutine[Any, Any, None]) -> None:
    """Run `steps` at once until all are done; the first to fail cancels the others (and
    they are awaited) and its exception propagates as it is (not in an ExceptionGroup)."""
    tasks = [asyncio.create_task(step) for step in steps]
    try:
        for finished in asyncio.as_completed(tasks):
            await finished
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class StackObserver(Protocol):
    """Hears how the start goes and what the services print."""

    def progress(self, message: str) -> None:
        """A step begins."""

    def done(self, message: str) -> None:
        """A step succeeded."""

    def note(self, message: str) -> None:
        """Something worth knowing that does not stop the stack."""

    def log(self, name: str, line: str) -> None:
        """One line of a service's output."""


@dataclass(slots=True)
class StackReport:
    """What the start did: parsers stored and the process ids of the services."""

    parsers: list[ParserState] = field(default_factory=list)
    refused: list[RefusedParser] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)


class EmbeddedStack(AsyncLifecycle):
    """Owns the stack's child processes; an async context manager."""

    def __init__(self, config: StackConfig, *, observer: StackObserver) -> None:
        self.config = config
        self.report = StackReport()
        self._observer = observer
        self._children: list[Child] = []
        self._exits: dict[asyncio.Task[int | None], Child] = {}

    async def start(self) -> None:
        """Start every part and wait until each is ready; on failure, stop what started."""
        try:
            ensure_free(self.config.ports())
            await self._migrate()
            await self._start_kafka()
            # The shipped parsers are checked in the sandbox (their examples run there)
            # before they are stored, as any upload is: the sandbox comes first. The
            # gateway needs no parser to start, so it starts meanwhile (the Efento
            # examples take seconds); the summary waits for both.
            await self._start_sandbox()
            await all_of(self._publish_parsers(), self._start_gateway())
        except BaseException:
            await self.stop()
            raise

    async def wait(self) -> None:
        """Wait until a service exits by itself, then raise ChildExitedError for it."""
        if not self._exits:
            raise StackError("the stack is not running")
        done, _ = await asyncio.wait(self._exits, return_when=asyncio.FIRST_COMPLETED)
        exited = next(iter(done))
        child = self._exits[exited]
        raise ChildExitedError(child.name, exited.result(), child.last_lines)

    async def stop(self) -> None:
        """Stop the services, newest first; idempotent."""
        exits, self._exits = self._exits, {}
        for task in exits:
            task.cancel()
        await asyncio.gather(*exits, return_exceptions=True)
        children, self._children = self._children, []
        for child in reversed(children):
            self._observer.progress(f"stopping {child.name}")
            await child.stop()
            self._observer.done(f"{child.name} stopped")

    # --- the steps ---------------------------------------------------------------------

    async def _migrate(self) -> None:
        self._observer.progress("migrating the database")
        try:
            revision = await upgrade(self.config.database_url)
        except (SQLAlchemyError, OSError) as exc:
            raise StackError(f"cannot migrate the database: {exc}") from exc
        self._observer.done(f"database at revision {revision}")

    async def _start_kafka(self) -> None:
        config = self.config
        if config.broker_port is None:
            await self._reach_kafka()
            return
        self._observer.progress(f"starting the bundled Kafka broker on {config.kafka_bootstrap}")
        broker = BrokerChild(host=BROKER_HOST, port=config.broker_port, sink=self._observer.log)
        self._children.append(broker)
        try:
            await broker.start()
        except BrokerError as exc:
            raise StackSetupError(str(exc)) from exc
        self._watch(broker)
        self._observer.done(f"kafka ready on {config.kafka_bootstrap} (pid {broker.pid})")

    async def _reach_kafka(self) -> None:
        bootstrap = self.config.kafka_bootstrap
        self._observer.progress(f"connecting to Kafka at {bootstrap}")
        first = readiness.local(parse_host_port(bootstrap.split(",")[0]))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.timings.kafka_connect_s
        while not await readiness.tcp_accepting(first):
            if loop.time() > deadline:
                raise StackSetupError(
                    f"cannot reach Kafka at {bootstrap} (PRESERVARIUM_KAFKA_BOOTSTRAP)"
                )
            await asyncio.sleep(readiness.PROBE_INTERVAL_S)
        self._observer.done(f"kafka reachable at {bootstrap}")

    async def _publish_parsers(self) -> None:
        directory = self.config.parsers_dir
        if directory is None or not directory.is_dir():
            where = "examples/parsers" if directory is None else str(directory)
            self._observer.note(f"no shipped parsers found ({where}); none uploaded")
            return
        self._observer.progress(f"uploading the shipped parsers of {directory}")
        parsers, unreadable = read_parsers(directory)
        engine = make_engine(self.config.database_url)
        sandbox = SandboxClient(
            readiness.grpc_target(readiness.local(self.config.sandbox_listen)),
            timeout_s=self.config.timings.sandbox_call_s,
        )
        try:
            async with sandbox:
                self.report.parsers, refused = await publish_shipped(engine, sandbox, parsers)
        except (RepositoryError, SandboxUnavailableError) as exc:
            raise StackError(f"cannot store the shipped parsers: {exc}") from exc
        finally:
            await engine.dispose()
        self.report.refused = unreadable + refused
        for each in self.report.refused:
            self._observer.note(f"{each.path.name} not uploaded: {each.reason}")
        states = ", ".join(map(describe_parser, self.report.parsers)) or f"none in {directory}"
        self._observer.done(f"parsers: {states}")

    async def _start_sandbox(self) -> None:
        listen = self.config.sandbox_listen
        child = await self._spawn("sandbox", f"on {listen}")
        await readiness.wait_ready(
            child,
            self._exit_of(child),
            lambda: readiness.sandbox_serving(readiness.local(listen)),
            timeout_s=self.config.timings.sandbox_ready_s,
        )
        self._observer.done(f"sandbox serving gRPC on {listen} (pid {child.pid})")

    async def _start_gateway(self) -> None:
        bind = self.config.coap_bind
        child = await self._spawn("gateway", f"on {bind}/udp")
        await readiness.wait_ready(
            child,
            self._exit_of(child),
            lambda: readiness.gateway_answering(readiness.local(bind)),
            timeout_s=self.config.timings.gateway_ready_s,
        )
        self._observer.done(f"gateway serving CoAP on {bind}/udp (pid {child.pid})")

    # --- helpers -----------------------------------------------------------------------

    async def _spawn(self, service: Service, where: str) -> ChildProcess:
        program = self._program(PROGRAMS[service])
        self._observer.progress(f"starting the {service} {where}")
        child = ChildProcess(
            name=service,
            argv=[str(program)],
            env=self.config.child_env(service),
            sink=self._observer.log,
            grace_s=self.config.timings.grace_s,
        )
        try:
            await child.start()
        except OSError as exc:
            raise StackSetupError(f"cannot run {program}: {exc.strerror}") from exc
        self._children.append(child)
        self._watch(child)
        return child

    def _program(self, name: str) -> Path:
        beside = self.config.bin_dir / name
        if beside.is_file():
            return beside
        found = shutil.which(name)
        if found is None:
            raise StackSetupError(f"{name} is not installed: pip install {name}")
        return Path(found)

    def _watch(self, child: Child) -> None:
        self._exits[asyncio.create_task(child.wait(), name=f"{child.name}-exit")] = child
        if child.pid is not None:
            self.report.pids[child.name] = child.pid

    def _exit_of(self, child: Child) -> asyncio.Task[int | None]:
        return next(task for task, owner in self._exits.items() if owner is child)
