"""`preservarium-gateway`: the CoAP gateway process."""

from __future__ import annotations

import asyncio

from preservarium.service import run_service
from preservarium.settings import Settings


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Serve until SIGTERM/SIGINT, then drain in-flight contacts and stop."""
    # Imported once the settings are read: a bad setting is reported before the seconds
    # of CPU that importing the server (SQLAlchemy, FastAPI, aiocoap, aiokafka) costs.
    from preservarium_gateway.config import GatewayConfig
    from preservarium_gateway.server import GatewayServer

    async with GatewayServer(GatewayConfig.from_settings(settings)):
        await stop.wait()


def main() -> None:
    """Console-script entry point."""
    run_service("preservarium-gateway", serve)
