"""RouteIdentities with an in-memory directory (unit level): when the database is asked."""

from __future__ import annotations

from typing import Any

import pytest
from preservarium.errors import DatabaseUnavailableError
from preservarium_gateway.identity import RouteIdentities
from preservarium_gateway.pending_commands import PendingCommandIndex


class Directory:
    """The two lookups of DeviceDirectory: a memory copy and the registry behind it."""

    def __init__(self, memory: dict[str, str], registry: dict[str, str] | None = None) -> None:
        self.memory = memory
        self.registry = registry
        self.queries: list[str] = []

    def known_type(self, device_id: str) -> str | None:
        return self.memory.get(device_id)

    async def device_type(self, device_id: str) -> str | None:
        self.queries.append(device_id)
        if self.registry is None:
            raise DatabaseUnavailableError("down")
        return self.registry.get(device_id)


def identities(directory: Directory, *pending: str) -> RouteIdentities:
    index = PendingCommandIndex()
    for device_id in pending:
        index.add(device_id)
    fake: Any = directory
    return RouteIdentities(directory=fake, pending=index)


async def check(checker: RouteIdentities, device_id: str) -> Any:
    return await checker.check(device_id, route="m", device_type="efento")


async def test_a_type_known_in_memory_decides_without_a_query() -> None:
    directory = Directory({"a1": "dragino", "b2": "efento"}, {})
    mismatch = await check(identities(directory), "a1")
    assert mismatch.refusal.kind == "device_mismatch" and mismatch.refusal.forbidden
    assert "dragino" in mismatch.refusal.message and "efento" in mismatch.refusal.message
    same = await check(identities(directory), "b2")
    assert same.refusal is None and same.device_id == "b2" and same.verified
    assert directory.queries == []


async def test_an_unregistered_route_device_costs_no_query() -> None:
    directory = Directory({}, {})
    identity = await check(identities(directory), "c3")
    assert identity.refusal is None and identity.device_id == "c3"
    assert directory.queries == []


async def test_a_device_with_a_waiting_command_is_looked_up() -> None:
    directory = Directory({}, {"d4": "dragino"})
    identity = await check(identities(directory, "d4"), "d4")
    assert identity.refusal is not None and identity.refusal.kind == "device_mismatch"
    assert directory.queries == ["d4"]


async def test_an_unreachable_registry_means_no_command() -> None:
    identity = await check(identities(Directory({}, None), "e5"), "e5")
    assert identity.refusal is None and identity.verified is False


@pytest.mark.parametrize("named", ["..", ".", "", "a b", "x" * 65, "é"])
async def test_an_id_out_of_the_rules_is_invalid_output(named: str) -> None:
    identity = await check(identities(Directory({named: "efento"})), named)
    assert identity.device_id is None
    assert identity.refusal.kind == "invalid_output" and not identity.refusal.forbidden


async def test_a_contact_that_proved_another_device_is_a_mismatch_without_a_query() -> None:
    directory = Directory({}, None)
    identity = await identities(directory).check("a1", route="m", device_type="efento", proven="b2")
    assert identity.refusal is not None and identity.refusal.kind == "device_mismatch"
    assert identity.refusal.forbidden and identity.refusal.proven_other
    assert directory.queries == []


async def test_a_contact_that_proved_the_named_device_is_checked_as_usual() -> None:
    directory = Directory({"b2": "efento", "c3": "dragino"}, {})
    same = await identities(directory).check("b2", route="m", device_type="efento", proven="b2")
    assert same.refusal is None and same.device_id == "b2"
    typed = await identities(directory).check("c3", route="m", device_type="efento", proven="c3")
    assert typed.refusal is not None and not typed.refusal.proven_other
