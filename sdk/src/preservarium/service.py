"""Running a service process: settings at the edge, signals, a clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from preservarium import logs, runtime
from preservarium.errors import PreservariumError
from preservarium.settings import Settings, load_settings

ServiceMain = Callable[[Settings, asyncio.Event], Coroutine[Any, Any, None]]


def run_service(name: str, body: ServiceMain, **overrides: Any) -> None:
    """Load settings (`overrides`, e.g. from command-line options, win over the
    environment), run `body` until SIGTERM/SIGINT sets its stop event, exit cleanly.

    A bad setting or a failure to start is one line on stderr and exit status 2.
    """
    try:
        settings = load_settings(**overrides)
    except PreservariumError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logs.configure(settings.log_level)
    try:
        asyncio.run(_main(name, settings, body))
    except PreservariumError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


async def _main(name: str, settings: Settings, body: ServiceMain) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await body(settings, stop)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)
        logging.getLogger(name).info("stopped")


def settled() -> None:
    """Once a service has started: keep what it holds out of the garbage collector's full
    passes (`runtime.settle`), and say how much that was."""
    frozen = runtime.settle()
    logging.getLogger("preservarium.runtime").info(
        "start-up objects frozen", extra={"objects": frozen}
    )
