"""`preservarium-sandbox`: the parser sandbox process."""

from __future__ import annotations

import asyncio

from preservarium.service import run_service, settled
from preservarium.settings import Settings


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Serve until SIGTERM/SIGINT; in-flight calls finish before the workers stop."""
    # Imported once the settings are read: a bad setting is reported before the server's
    # imports (gRPC, SQLAlchemy) cost their CPU.
    from preservarium_sandbox.server import SandboxConfig, SandboxServer

    async with SandboxServer(SandboxConfig.from_settings(settings)):
        settled()
        await stop.wait()


def main() -> None:
    """Console-script entry point."""
    run_service("preservarium-sandbox", serve)
