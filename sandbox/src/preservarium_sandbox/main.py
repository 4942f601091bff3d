"""`preservarium-sandbox`: the parser sandbox process."""

from __future__ import annotations

import asyncio
import logging

from preservarium.service import run_service
from preservarium.settings import Settings

log = logging.getLogger("preservarium.sandbox")


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run the sandbox until `stop` is set."""
    log.info("sandbox starting", extra={"listen": str(settings.sandbox_listen)})
    await stop.wait()


def main() -> None:
    """Console-script entry point."""
    run_service("preservarium-sandbox", serve)
