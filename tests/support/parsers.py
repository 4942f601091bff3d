"""Parsers and devices stored for a test's sandbox, the way an operator would store them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from preservarium.db.engine import make_engine
from preservarium.repositories import SQLDeviceRepository, SQLParserRepository
from preservarium_sandbox.server import SandboxServer


async def install_parsers(
    database_url: str,
    sandbox: SandboxServer,
    parsers: Mapping[str, str],
    *,
    devices: Iterable[tuple[str, str]] = (),
) -> None:
    """Upload (and activate) `parsers` (device type -> source), register `devices`
    ((device id, device type) pairs), then have `sandbox` load them at once."""
    engine = make_engine(database_url)
    try:
        for device_type, source in parsers.items():
            await SQLParserRepository(engine).upload(device_type, source)
        for device_id, device_type in devices:
            await SQLDeviceRepository(engine).register(device_id, device_type)
    finally:
        await engine.dispose()
    await sandbox.catalog.refresh()
