"""OscoreContexts with in-memory sources (unit level): what is looked up, kept and dropped."""

from __future__ import annotations

import pytest
from preservarium.errors import NotFoundError
from preservarium.identity import AuthKind
from preservarium.identity.generate import new_oscore_material
from preservarium.identity.replay import ReplayWindow
from preservarium.repositories.credentials import AuthEntry, OscoreContextRecord
from preservarium.repositories.replay_windows import WindowState
from preservarium_gateway.errors import DirectoryBusyError
from preservarium_gateway.oscore_contexts import OscoreContexts


class Registry:
    """The credential source and the window store, in memory, counting queries."""

    def __init__(self, *device_ids: str) -> None:
        self.records = {}
        for device_id in device_ids:
            material = new_oscore_material()
            self.records[material.sender_id] = OscoreContextRecord(device_id, material)
        self.lookups: list[bytes] = []

    def kid(self, device_id: str) -> bytes:
        return next(k for k, r in self.records.items() if r.device_id == device_id)

    async def oscore_for_kid(self, kid: bytes) -> OscoreContextRecord | None:
        self.lookups.append(kid)
        return self.records.get(kid)

    async def state(self, kid: bytes) -> WindowState:
        if kid not in self.records:
            raise NotFoundError("gone")
        return WindowState(ReplayWindow(), 0)

    async def advance(self, kid: bytes, seq: int, known: WindowState) -> tuple[bool, WindowState]:
        return True, known


def contexts(registry: Registry, lookups_per_s: float = 100.0) -> OscoreContexts:
    return OscoreContexts(source=registry, windows=registry, unknown_ttl_s=60.0,
                          lookups_per_s=lookups_per_s)  # fmt: skip


async def test_a_context_is_read_once_and_names_its_device() -> None:
    registry = Registry("a1")
    held = contexts(registry)
    kid = registry.kid("a1")
    first = await held.get(kid)
    assert first is not None and first.device_id == "a1" and first.kid == kid
    assert await held.get(kid) is first
    assert registry.lookups == [kid]


async def test_an_unknown_kid_is_not_looked_up_again_for_a_while() -> None:
    registry = Registry()
    held = contexts(registry)
    assert await held.get(b"\x01" * 6) is None
    assert await held.get(b"\x01" * 6) is None
    assert registry.lookups == [b"\x01" * 6]


async def test_lookups_of_kids_not_held_share_a_budget() -> None:
    registry = Registry()
    held = contexts(registry, lookups_per_s=2.0)
    for n in range(2):
        assert await held.get(bytes([n]) * 6) is None
    with pytest.raises(DirectoryBusyError):
        await held.get(b"\x09" * 6)


async def test_a_reload_drops_contexts_whose_credentials_changed() -> None:
    registry = Registry("a1", "b2", "c3")
    held = contexts(registry)
    for device_id in ("a1", "b2", "c3"):
        assert await held.get(registry.kid(device_id)) is not None
    held.retain({
        "a1": AuthEntry(AuthKind.OSCORE, oscore_kid=registry.kid("a1").hex()),  # unchanged
        "b2": AuthEntry(AuthKind.OSCORE, oscore_kid="00" * 6),  # rotated
        "c3": AuthEntry(AuthKind.TOKEN),  # another kind now
    })  # fmt: skip
    assert len(held) == 1
    await held.get(registry.kid("b2"))
    assert registry.lookups.count(registry.kid("b2")) == 2


def test_the_gateway_swaps_the_devices_ids() -> None:
    from preservarium_gateway.oscore_contexts import DeviceSecurityContext

    material = new_oscore_material()
    context = DeviceSecurityContext(
        OscoreContextRecord("a1", material), WindowState(ReplayWindow(), 0)
    )
    assert (context.recipient_id, context.sender_id) == (
        material.sender_id, material.recipient_id,
    )  # fmt: skip
    assert context.window.is_valid(0) and context.window.is_initialized()
