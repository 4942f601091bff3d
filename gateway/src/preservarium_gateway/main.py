"""`preservarium-gateway [--processes N]`: the CoAP gateway, in one process or several."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from typing import NoReturn

from preservarium.service import run_service, settled
from preservarium.settings import ENV_PREFIX, Settings, parse_process_count

from preservarium_gateway.config import GatewayConfig
from preservarium_gateway.process_roles import LOOPBACK

NAME = "preservarium-gateway"
PROCESSES = ENV_PREFIX + "GATEWAY_PROCESSES"


class _OneLineParser(argparse.ArgumentParser):
    """A usage error is one line naming the option, and exit status 2 (as a bad setting)."""

    def error(self, message: str) -> NoReturn:
        print(f"{NAME}: {message}", file=sys.stderr)
        raise SystemExit(2)


def _process_count(text: str) -> int:
    try:
        count = parse_process_count(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (got {text!r})") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1 process (got {text!r})")
    return count


def arguments(argv: list[str]) -> argparse.Namespace:
    """The command line: `--processes N|auto`, and the index a parent gives its children."""
    parser = _OneLineParser(prog=NAME, description="The Preservarium CoAP gateway.")
    parser.add_argument(
        "--processes", type=_process_count, metavar="N",
        help=f"gateway processes sharing the CoAP port (or auto: one per CPU); default "
             f"{PROCESSES}, else 1",
    )  # fmt: skip
    parser.add_argument("--process-index", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


class _ProcessIndex(logging.Filter):
    """Marks every log line of a child with its index, so the parent's output says whose."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.gateway_process = self.index
        return True


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Serve until SIGTERM/SIGINT, then drain in-flight contacts and stop."""
    # Imported here, not above: a parent of several processes serves no contacts, and
    # without the server's modules (aiocoap, FastAPI, gRPC) it holds a fraction of the memory.
    from preservarium_gateway.server import GatewayServer

    async with GatewayServer(GatewayConfig.from_settings(settings)):
        settled()
        await stop.wait()


def _child(index: int) -> None:
    async def body(settings: Settings, stop: asyncio.Event) -> None:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_ProcessIndex(index))
        config = GatewayConfig.from_settings(settings)
        # Its metrics are for the parent to gather, not for the network.
        config = dataclasses.replace(config, metrics_host=LOOPBACK)
        from preservarium_gateway.server import GatewayServer  # see serve()

        async with GatewayServer(config):
            settled()
            await stop.wait()

    run_service(f"{NAME}[{index}]", body)


def main() -> None:
    """Console-script entry point."""
    args = arguments(sys.argv[1:])
    if args.process_index is not None:
        _child(args.process_index)
        return
    # The option wins over the variable; both are checked by the same settings.
    overrides = {} if args.processes is None else {"gateway_processes": args.processes}
    run_service(NAME, _serve_any, **overrides)


async def _serve_any(settings: Settings, stop: asyncio.Event) -> None:
    if settings.gateway_processes > 1:
        from preservarium_gateway.supervise import serve_processes  # see serve()

        await serve_processes(settings, stop)
    else:
        await serve(settings, stop)
