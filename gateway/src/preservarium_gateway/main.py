"""`preservarium-gateway`: the CoAP gateway process."""

from __future__ import annotations

import asyncio
import logging

from preservarium.service import run_service
from preservarium.settings import Settings

log = logging.getLogger("preservarium.gateway")


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run the gateway until `stop` is set."""
    log.info("gateway starting", extra={"coap_bind": str(settings.coap_bind)})
    await stop.wait()


def main() -> None:
    """Console-script entry point."""
    run_service("preservarium-gateway", serve)
