"""`preservarium replay TYPE ...`: run raw uplinks again through a parser version.

`replay list` and `replay show ID` report stored replays; anything else after `replay`
is a replay to run (`replay run TYPE` says the same, for a device type named `list`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import typer
from preservarium.ids import is_device_id, is_device_type
from typer.core import TyperGroup

from preservarium_tools.cli.common import fail, print_json, run, settings

if TYPE_CHECKING:
    from preservarium.replay.outcomes import Verdict
    from preservarium.replay.service import Replays, ReplaySummary
    from preservarium.replay.window import Window
    from preservarium.repositories.replays import ReplayRecord
    from preservarium.settings import Settings

USAGE = 2
# Per call, as `parser test`: above the sandbox's own ceiling (5 s) plus queueing.
CALL_TIMEOUT_S = 10.0
# Parse streams the replay's calls are spread over (the gateway's batched path).
STREAMS = 2


class ReplayGroup(TyperGroup):
    """`replay TYPE ...` runs a replay: a first word that is no subcommand means `run`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=ReplayGroup, no_args_is_help=True,
    help="Replay raw uplinks through a parser version; list and show replays.",
)  # fmt: skip
JSON = typer.Option(False, "--json", help="Machine-readable output.")


class Source(StrEnum):
    """The topic a replay takes its uplinks from."""

    raw = "raw"
    failed = "failed"


@asynccontextmanager
async def replays(config: Settings) -> AsyncIterator[Replays]:
    """The use case, on the configured database, sandbox and broker."""
    from preservarium.contract.topics import Topics
    from preservarium.replay.service import Replays
    from preservarium.repositories import SQLParserRepository, SQLReplayRepository
    from preservarium.sandbox_client import SandboxClient

    from preservarium_tools.cli.database import migrated_database

    names = Topics.with_prefix(config.topic_prefix)
    async with (
        migrated_database(config) as engine,
        SandboxClient(config.sandbox_addr, timeout_s=CALL_TIMEOUT_S, streams=STREAMS) as client,
    ):
        yield Replays(
            parsers=SQLParserRepository(engine), replays=SQLReplayRepository(engine),
            sandbox=client, bootstrap=config.kafka_bootstrap, topics=names,
        )  # fmt: skip


def quiet_replay_log() -> None:
    """The replay's log is for services that run it; the command says what happened in
    its own lines (Python would print the log's warnings on stderr as well)."""
    replay_log = logging.getLogger("preservarium.replay")
    replay_log.addHandler(logging.NullHandler())
    replay_log.propagate = False


def _checked(device_type: str | None, device: str | None) -> None:
    if device_type is not None and not is_device_type(device_type):
        fail(f"invalid device type {device_type!r}: use 1 to 64 characters of A-Z a-z 0-9 . _ -",
             USAGE)  # fmt: skip
    if device is not None and not is_device_id(device):
        fail(f"invalid device id {device!r}: use 1 to 64 characters of A-Z a-z 0-9 . _ : -", USAGE)


def window_or_fail(since: str | None, until: str | None) -> Window:
    """The window of --since/--until, or one line and exit 2."""
    from preservarium.replay import ReplayError
    from preservarium.replay.window import window

    try:
        return window(since, until, now=datetime.now(UTC))
    except ReplayError as exc:
        fail(str(exc), USAGE)


@app.command("run")
def run_replay(
    device_type: str | None = typer.Argument(None, metavar="TYPE", help="The device type."),
    version: int | None = typer.Option(
        None, "--version", min=1, metavar="N", help="A stored version (default: the active one)."
    ),
    since: str | None = typer.Option(
        None, "--since", metavar="T", help="RFC 3339, or back from now: 30m, 2h, 7d (default 24h)."
    ),
    until: str | None = typer.Option(
        None, "--until", metavar="T", help="As --since (default now)."
    ),
    device: str | None = typer.Option(None, "--device", metavar="ID", help="One device only."),
    source: Source = typer.Option(
        Source.raw, "--from", help="raw: every uplink; failed: those whose parse failed."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Publish nothing: diff each result against the original."
    ),
    rate: int | None = typer.Option(
        None,
        "--rate",
        min=1,
        max=100_000,
        metavar="N",
        help="Uplinks per second at most (default 200; a resumed replay keeps its own).",
    ),
    resume: str | None = typer.Option(
        None, "--resume", metavar="ID", help="Continue a replay that was interrupted."
    ),
    as_json: bool = JSON,
) -> None:
    """Replay TYPE's raw uplinks of a window through a parser version.

    Results go to uplink.parsed / uplink.failed stamped `replay: {id, of}`; with
    --dry-run nothing is published and each result that differs from what was published
    at the time is printed, field by field. Never answers devices nor sends commands.
    Exit 0 done, 1 bad request, 2 infrastructure (the replay can be resumed).
    """
    from preservarium_tools.cli.command_cmds import require_aiokafka

    if resume is not None:
        if any(v is not None for v in (device_type, version, since, until, device)) or dry_run:
            fail("--resume continues a stored replay as it was started: give it alone "
                 "(with --rate or --json)", USAGE)  # fmt: skip
    elif device_type is None:
        fail("give a device TYPE to replay (or --resume ID)", USAGE)
    _checked(device_type, device)
    request = None
    if device_type is not None and resume is None:
        from preservarium.replay.pace import DEFAULT_RATE
        from preservarium.replay.service import ReplayRequest

        request = ReplayRequest(
            device_type=device_type, window=window_or_fail(since, until), version=version,
            device_id=device, source=source.value, rate=rate or DEFAULT_RATE,
        )  # fmt: skip
    require_aiokafka()
    quiet_replay_log()
    config = settings()
    verdicts: list[Verdict] = []
    seen_id: list[str | None] = [None]  # the replay's id, once it has one (for Ctrl-C)

    async def body() -> ReplaySummary:
        from preservarium_tools.cli import replay_view

        async with replays(config) as use_case:
            with replay_view.observers(
                as_json=as_json, dry_run=dry_run, collected=verdicts, started=seen_id
            ) as seen:
                if request is None:
                    return await use_case.resume(resume or "", seen, rate=rate)
                if dry_run:
                    return await use_case.dry_run(request, seen)
                return await use_case.start(request, seen)

    try:
        summary = run(body)
    except KeyboardInterrupt:
        if dry_run:
            fail("interrupted: nothing was published", 130)
        fail(f"interrupted: what was published is stored; continue with "
             f"preservarium replay --resume {resume or seen_id[0] or 'ID'} "
             "(preservarium replay list shows it)", 130)  # fmt: skip
    _report(summary, verdicts, as_json=as_json)


def _report(summary: ReplaySummary, verdicts: list[Verdict], *, as_json: bool) -> None:
    from preservarium_tools.cli import replay_view

    if summary.dry_run:
        if as_json:
            print_json(replay_view.dry_run_json(summary, verdicts))
        else:
            replay_view.print_dry_run(summary)
        return
    if as_json:
        print_json(replay_view.replay_json(summary))
    else:
        replay_view.print_replay(summary)


@app.command("list")
def list_replays(as_json: bool = JSON) -> None:
    """List the stored replays, newest first."""
    config = settings()

    async def body() -> list[ReplayRecord]:
        from preservarium.repositories import SQLReplayRepository

        from preservarium_tools.cli.database import migrated_database

        async with migrated_database(config) as engine:
            return await SQLReplayRepository(engine).list()

    found = run(body)
    from preservarium_tools.cli import replay_view

    if as_json:
        print_json([replay.as_json() for replay in found])
        return
    replay_view.print_list(found)


@app.command("show")
def show_replay(replay_id: str = typer.Argument(..., metavar="ID"), as_json: bool = JSON) -> None:
    """Show one replay: what it replays, how far it got, how it ended."""
    config = settings()

    async def body() -> ReplayRecord:
        from preservarium.errors import NotFoundError
        from preservarium.replay import ReplayError
        from preservarium.repositories import SQLReplayRepository

        from preservarium_tools.cli.database import migrated_database

        async with migrated_database(config) as engine:
            try:
                return await SQLReplayRepository(engine).get(replay_id)
            except NotFoundError as exc:
                raise ReplayError(str(exc), kind="unknown_replay") from exc

    found = run(body)
    from preservarium_tools.cli import replay_view

    if as_json:
        print_json(found.as_json())
        return
    replay_view.print_show(found)
