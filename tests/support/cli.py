"""Running `preservarium ARGS...` from a test: in this process, or as the real console script.

Starting the console script costs about two seconds of CPU (a fresh interpreter importing
SQLAlchemy, pydantic and aiokafka), which made the CLI tests most of the suite's time.
`run_cli` runs the same entry point (`preservarium_tools.cli.app.main`) in this process and
returns what a subprocess would: the exit code, stdout and stderr. `run_cli_process` runs
the console script itself, for the tests where the process is the point: the entry point,
what an import costs, signals, a module hidden from the interpreter.

An in-process call owns the process for its duration (environment, working directory,
standard streams), so calls are serialised. The command runs in a thread of its own,
because it starts its own event loop (asyncio.run): call it directly from a sync test,
or through `asyncio.to_thread` from an async test whose loop must keep serving (a broker
reader, a gateway) while the command runs, exactly as with a subprocess.
"""

from __future__ import annotations

import contextvars
import io
import os
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

BIN = Path(sys.executable).parent


def run_cli_process(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    cwd: Path | None = None,
    inherit: bool = True,
) -> subprocess.CompletedProcess[str]:
    """The real console script `preservarium ARGS...`; never raises on failure.

    `env` is added to this process's environment (with `inherit`) or is the whole of it."""
    full_env = {**os.environ, **(env or {})} if inherit else dict(env or {})
    return subprocess.run(
        [str(BIN / "preservarium"), *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


# Which call's buffers a write belongs to. A context variable, not a thread-local: the
# command's event loop and the threads it hands work to (asyncio.to_thread) copy it.
_CAPTURE: contextvars.ContextVar[tuple[io.StringIO, io.StringIO] | None] = contextvars.ContextVar(
    "cli_capture", default=None
)
_ONE_AT_A_TIME = threading.Lock()


class _RoutedStream(io.TextIOBase):
    """sys.stdout (or sys.stderr) while a command runs: the command's writes go to its
    buffer, anybody else's (the test's own event loop, say) to the stream it replaced."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self._index = index
        self.fallback: TextIO = sys.__stdout__ if index == 0 else sys.__stderr__  # type: ignore[assignment]

    def _target(self) -> TextIO:
        buffers = _CAPTURE.get()
        return self.fallback if buffers is None else buffers[self._index]

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        target = self._target()
        if isinstance(target, io.StringIO):
            raise io.UnsupportedOperation("a captured command's output has no descriptor")
        return target.fileno()


_STDOUT = _RoutedStream(0)
_STDERR = _RoutedStream(1)


@contextmanager
def _this_process_as(env: dict[str, str], cwd: Path | None) -> Iterator[None]:
    """Environment, working directory and standard streams of a command, restored after."""
    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    saved_streams = sys.stdout, sys.stderr
    _STDOUT.fallback, _STDERR.fallback = saved_streams
    os.environ.clear()
    os.environ.update(env)
    sys.stdout, sys.stderr = _STDOUT, _STDERR
    try:
        if cwd is not None:
            os.chdir(cwd)
        yield
    finally:
        sys.stdout, sys.stderr = saved_streams
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


def _route_consoles() -> None:
    """The CLI's rich consoles were bound to a stream when their module was imported:
    point them at the routed streams, whoever imported them first."""
    from preservarium_tools.cli import common
    from preservarium_tools.cli.pipe_safe import pipe_safe

    common.console.file = pipe_safe(_STDOUT)  # type: ignore[arg-type]
    common.err_console.file = pipe_safe(_STDERR)  # type: ignore[arg-type]


def _exit_code(exit: SystemExit, stderr: io.StringIO) -> int:
    """What the interpreter makes of SystemExit(code) at the top of a process."""
    if exit.code is None:
        return 0
    if isinstance(exit.code, int):
        return exit.code
    stderr.write(f"{exit.code}\n")
    return 1


def _main(args: tuple[str, ...], buffers: tuple[io.StringIO, io.StringIO]) -> int:
    from preservarium_tools.cli.app import main

    _CAPTURE.set(buffers)
    try:
        main(list(args))
    except SystemExit as exit:
        return _exit_code(exit, buffers[1])
    except BaseException:  # a crash is a traceback and exit 1, as in a process
        buffers[1].write(traceback.format_exc())
        return 1
    return 0


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    cwd: Path | None = None,
    inherit: bool = True,
) -> subprocess.CompletedProcess[str]:
    """`preservarium ARGS...` run in this process; never raises on failure.

    `env` is added to this process's environment (with `inherit`) or is the whole of it;
    `cwd` is the working directory while the command runs."""
    full_env = {**os.environ, **(env or {})} if inherit else dict(env or {})
    buffers = io.StringIO(), io.StringIO()
    codes: list[int] = []
    with _ONE_AT_A_TIME, _this_process_as(full_env, cwd):
        _route_consoles()
        context = contextvars.copy_context()
        worker = threading.Thread(
            target=lambda: codes.append(context.run(_main, args, buffers)),
            name=f"preservarium {' '.join(args)}"[:60],
            daemon=True,
        )
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            raise subprocess.TimeoutExpired(["preservarium", *args], timeout)
    return subprocess.CompletedProcess(
        ["preservarium", *args], codes[0], buffers[0].getvalue(), buffers[1].getvalue()
    )
