"""`preservarium up`: the embedded stack in the foreground, until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import typer
from preservarium.errors import ConfigError
from preservarium.settings import Settings
from rich.console import Console
from rich.markup import escape
from rich.status import Status
from rich.text import Text

import preservarium_tools
from preservarium_tools.cli.common import console, fail, settings
from preservarium_tools.embedded import logview
from preservarium_tools.embedded.config import DEFAULT_KAFKA_PORT, StackConfig, UpOptions
from preservarium_tools.embedded.errors import ChildExitedError, NotReadyError, StackError
from preservarium_tools.embedded.shipped import candidates, find_parsers_dir
from preservarium_tools.embedded.stack import EmbeddedStack, StackReport
from preservarium_tools.embedded.summary import endpoints, next_commands

CHILD_STYLES = {"kafka": "magenta", "sandbox": "cyan", "gateway": "blue"}
LEVEL_STYLES = {"debug": "dim", "warning": "yellow", "error": "bold red", "critical": "bold red"}


def up(
    kafka_port: int = typer.Option(
        DEFAULT_KAFKA_PORT,
        "--kafka-port",
        min=1,
        max=65535,
        help="Port of the bundled broker (used when PRESERVARIUM_KAFKA_BOOTSTRAP is not set).",
    ),
    parsers_dir: Path | None = typer.Option(
        None,
        "--parsers-dir",
        envvar="PRESERVARIUM_PARSERS_DIR",
        metavar="DIR",
        help="Where the shipped parsers are (default: examples/parsers/ found from the "
        "current directory upwards, then in the source checkout; if none is found, up says "
        "so and runs without).",
    ),
    gateway_metrics_port: int | None = typer.Option(
        None,
        "--gateway-metrics-port",
        min=0,
        max=65535,
        metavar="PORT",
        help="Default 9464; 0 = off.",
    ),
    sandbox_metrics_port: int | None = typer.Option(
        None,
        "--sandbox-metrics-port",
        min=0,
        max=65535,
        metavar="PORT",
        help="Default 9465; 0 = off.",
    ),
    grace: float = typer.Option(
        10.0, "--grace", min=0.5, metavar="SECONDS", help="Time each service gets to stop."
    ),
) -> None:
    """Run the embedded stack in the foreground; Ctrl-C (or SIGTERM, SIGHUP, a closed
    output pipe) stops all of it, and the services die with up even when it is killed.

    Starts, in order: migrations of the database (PRESERVARIUM_DATABASE_URL, by default
    SQLite in PRESERVARIUM_DATA_DIR: ~/.local/share/preservarium), the bundled
    Kafka-compatible broker on 127.0.0.1:9092 unless PRESERVARIUM_KAFKA_BOOTSTRAP names a
    Kafka, the sandbox, then both the shipped parsers (each TYPE.py of the parsers
    directory, checked as `parser upload` checks it, its TYPE.examples.yaml run in the
    sandbox, and stored as a new version only when its source or examples changed) and
    the gateway on 127.0.0.1:5683 with the Efento routes m, i, c, t (unless
    PRESERVARIUM_COAP_BIND / _COAP_ROUTES say otherwise). Metrics: gateway 9464, sandbox
    9465; PRESERVARIUM_METRICS_PORT=N gives them N and N+1, and 0 turns both off. Every
    other PRESERVARIUM_* variable is passed on.

    Exit status: 0 after Ctrl-C (or SIGTERM, SIGHUP, SIGPIPE), 1 when a service fails,
    2 when a port is in use or a setting is bad.
    """
    options = UpOptions(
        kafka_port=kafka_port,
        parsers_dir=parsers_dir,
        gateway_metrics_port=gateway_metrics_port,
        sandbox_metrics_port=sandbox_metrics_port,
        grace_s=grace,
    )
    config = stack_config(settings(), options)
    try:
        asyncio.run(serve(config))
    except StackError as exc:
        show_last_lines(exc)
        fail(str(exc), exc.exit_code)


def stack_config(current: Settings, options: UpOptions) -> StackConfig:
    """The stack to run; a bad combination of settings is one line and exit 2."""
    found = options.parsers_dir
    if found is None:
        found = find_parsers_dir(candidates(Path.cwd(), Path(preservarium_tools.__file__)))
    try:
        return StackConfig.from_settings(
            current,
            options,
            environ=os.environ,
            bin_dir=Path(sys.executable).parent,
            parsers_dir=found,
        )
    except ConfigError as exc:
        fail(str(exc), code=2)


async def serve(config: StackConfig) -> None:
    """Start the stack, show where it listens, run until a signal or a service failure."""
    observer = ConsoleObserver(console)
    stack = EmbeddedStack(config, observer=observer)
    stop = asyncio.Event()
    with stop_on_signals(stop), observer:
        try:
            if await _first(asyncio.create_task(stack.start()), stop):
                print_summary(config, stack.report)
                await _first(asyncio.create_task(stack.wait()), stop)
        finally:
            await stack.stop()


async def _first(task: asyncio.Task[None], stop: asyncio.Event) -> bool:
    """Await `task` unless `stop` is set first (then cancel it); True when it finished."""
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        await asyncio.gather(stopping, return_exceptions=True)
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return False
    task.result()
    return True


# Every way the terminal or a pipeline can end `up`: Ctrl-C, kill, a closed terminal,
# a reader of its output that left. (SIGKILL cannot be caught: the children's
# parent-death signal covers it.)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE)


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """Each of STOP_SIGNALS sets `stop` while the block runs."""
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    try:
        yield
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
        # Removing a handler restores the system default, which for SIGPIPE is death;
        # Python's own choice is to ignore it and raise BrokenPipeError on the write.
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)


class ConsoleObserver:
    """Shows the start as a spinner and check marks, and the services' logs, prefixed."""

    def __init__(self, out: Console) -> None:
        self._out = out
        self._status: Status | None = None

    def progress(self, message: str) -> None:
        """A step begins: the spinner says which."""
        if self._status is None:
            self._status = self._out.status(escape(message))
            self._status.start()
        else:
            self._status.update(escape(message))

    def done(self, message: str) -> None:
        """A step succeeded: its check mark replaces the spinner."""
        self._stop_spinner()
        self._out.print(f"[green]✓[/] {escape(message)}", highlight=False, soft_wrap=True)

    def note(self, message: str) -> None:
        """Worth knowing, not fatal."""
        self._out.print(f"[yellow]![/] {escape(message)}", highlight=False, soft_wrap=True)

    def log(self, name: str, line: str) -> None:
        """One line of a service's output, JSON logs made compact."""
        rendered = logview.render(line)
        prefix = (f"[{name}] ", CHILD_STYLES.get(name, "bold"))
        level = rendered.level or ""
        head = Text.assemble(prefix, (f"{level} " if level else "", LEVEL_STYLES.get(level, "")))
        self._out.print(head + Text(rendered.text), highlight=False, soft_wrap=True)
        for extra in rendered.detail:
            self._out.print(Text.assemble(prefix, extra), highlight=False, soft_wrap=True)

    def __enter__(self) -> ConsoleObserver:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_spinner()

    def _stop_spinner(self) -> None:
        status, self._status = self._status, None
        if status is not None:
            status.stop()


def print_summary(config: StackConfig, report: StackReport) -> None:
    """Where everything listens, and what to try next."""
    console.print("\n[bold green]preservarium is up[/]: Ctrl-C stops everything", highlight=False)
    for key, value in endpoints(config, report):
        console.print(f"  {key:<16} {escape(value)}", highlight=False, soft_wrap=True)
    console.print("\nTry, in another terminal:", highlight=False)
    for command in next_commands(config):
        console.print(f"  [bold]{escape(command)}[/]", highlight=False, soft_wrap=True)
    console.print()


def show_last_lines(exc: StackError) -> None:
    """A failed service's last lines, before the one-line error."""
    if isinstance(exc, ChildExitedError | NotReadyError) and exc.last_lines:
        console.print(f"last lines of {exc.name}:", style="bold", highlight=False)
        observer = ConsoleObserver(console)
        for line in exc.last_lines:
            observer.log(exc.name, line)
