"""`preservarium-gateway`: the CoAP gateway process."""

from __future__ import annotations

import asyncio

from preservarium.service import run_service
from preservarium.settings import Settings

from preservarium_gateway.config import GatewayConfig
from preservarium_gateway.server import GatewayServer


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Serve until SIGTERM/SIGINT, then drain in-flight contacts and stop."""
    async with GatewayServer(GatewayConfig.from_settings(settings)):
        await stop.wait()


def main() -> None:
    """Console-script entry point."""
    run_service("preservarium-gateway", serve)
