"""The directory's copy of the registry follows changes within seconds, on PostgreSQL and
SQLite, by reading the registry revision; a quiet registry costs one small read a tick."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from preservarium.repositories import SQLDeviceRepository
from preservarium_gateway.directory import DeviceDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.gateway.test_redteam import _count_statements

WATCH_S = 0.1


async def eventually(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait for `condition`: generous, since a loaded machine delays the watch."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, "the directory did not follow the registry"
        await asyncio.sleep(0.02)


async def test_registrations_attribute_changes_and_removals_reach_the_copy(
    engine: AsyncEngine,
) -> None:
    devices = SQLDeviceRepository(engine)
    await devices.register("d1", "thermo", attributes={"site": "north"})
    directory = DeviceDirectory(devices, refresh_s=3600, unknown_ttl_s=60, watch_s=WATCH_S)
    await directory.start()
    try:
        assert json.loads(directory.attributes_json("d1")) == {"site": "north"}
        assert directory.attributes_json("nobody") == "" and directory.attributes_json(None) == ""
        await devices.update_attributes("d1", set_={"floor": 2})
        await eventually(lambda: '"floor":2' in directory.attributes_json("d1"))
        await devices.register("d2", "dragino", attributes={"a": [1, {"b": None}]})
        await eventually(lambda: directory.known_type("d2") == "dragino")
        assert json.loads(directory.attributes_json("d2")) == {"a": [1, {"b": None}]}
        await devices.update_attributes("d1", replace=True)
        await eventually(lambda: directory.attributes_json("d1") == "")
        await devices.change_type("d2", "thermo")
        await devices.remove("d1")
        await eventually(lambda: directory.known_type("d1") is None)
        assert directory.known_type("d2") == "thermo"
    finally:
        await directory.stop()


async def test_a_quiet_registry_is_not_reloaded(engine: AsyncEngine) -> None:
    devices = SQLDeviceRepository(engine)
    await devices.register("d1", "thermo")
    directory = DeviceDirectory(devices, refresh_s=3600, unknown_ttl_s=60, watch_s=WATCH_S)
    await directory.start()
    try:
        statements = _count_statements(engine)
        await eventually(lambda: len(statements) >= 5)
        assert all("registry_revision" in statement for statement in statements), statements
        assert not any("FROM devices" in statement for statement in statements)
    finally:
        await directory.stop()
