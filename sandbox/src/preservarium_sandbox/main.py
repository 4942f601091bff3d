"""`preservarium-sandbox`: the parser sandbox process."""

from __future__ import annotations

import asyncio

from preservarium.service import run_service
from preservarium.settings import Settings

from preservarium_sandbox.server import SandboxConfig, SandboxServer


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Serve until SIGTERM/SIGINT; in-flight calls finish before the workers stop."""
    async with SandboxServer(SandboxConfig.from_settings(settings)):
        await stop.wait()


def main() -> None:
    """Console-script entry point."""
    run_service("preservarium-sandbox", serve)
