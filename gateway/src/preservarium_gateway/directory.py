"""The device directory: device id -> type, attributes and credential kind, in memory, so
contacts need no query once warm.

Known devices are a dict hit. An unknown id is looked up once and remembered as unknown
for a moment. Lookups of ids the copy does not hold share a budget (a token bucket,
`UNKNOWN_LOOKUPS_PER_S`): a flood of made-up ids, each new, would otherwise cost one
query per datagram and queue on the connection pool in front of real devices' claims.
Past the budget the id is not looked up and `DirectoryBusyError` says so (the device is
told to retry; a registration is never taken for "unknown" unasked). A full reload now
and then notices devices removed or re-typed, and credentials set, rotated or removed
(so a change reaches every gateway within `refresh_s`; a device met for the first time
is read whole, type and credentials together), and learns new ones. Between reloads the
registry revision (one primary-key read every `watch_s`) tells whether a device was
registered, removed, re-typed or given new attributes or credentials: the copy is
reloaded at once, so such a change reaches the next contact within `watch_s` and a reload.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from preservarium.attributes import encode_attributes
from preservarium.errors import NotFoundError
from preservarium.identity.kinds import AuthKind
from preservarium.lifecycle import AsyncLifecycle
from preservarium.periodic import Periodic
from preservarium.repositories import SQLDeviceRepository
from preservarium.repositories.credentials import NO_CREDENTIALS, AuthEntry
from preservarium.supervisor import Supervisor

from preservarium_gateway.errors import DirectoryBusyError
from preservarium_gateway.types import Clock

log = logging.getLogger("preservarium.gateway.directory")
MAX_UNKNOWN = 100_000
# Registry lookups of ids the copy does not hold, a second (and at once): new devices
# registered since the last reload, at a pace no registration process exceeds.
UNKNOWN_LOOKUPS_PER_S = 20.0


class LookupBudget:
    """A token bucket: `rate` lookups a second on average, at most `rate` at once."""

    def __init__(self, rate: float, *, clock: Clock = time.monotonic) -> None:
        self._rate = rate
        self._tokens = rate
        self._at = clock()

    def take(self, now: float) -> bool:
        """Spend one lookup if there is one left."""
        self._tokens = min(self._rate, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class CredentialSource(Protocol):
    """Where credential kinds come from (SQLCredentialRepository is the real one)."""

    async def auth_entries(self) -> dict[str, AuthEntry]:
        """Every device with credentials."""
        ...

    async def auth_entry(self, device_id: str) -> AuthEntry:
        """One device's credentials (`none` when it has none)."""
        ...


class DeviceDirectory(AsyncLifecycle):
    """Registered devices, their types and how they authenticate."""

    def __init__(
        self,
        repository: SQLDeviceRepository,
        *,
        refresh_s: float,
        unknown_ttl_s: float,
        watch_s: float = 1.0,
        lookups_per_s: float = UNKNOWN_LOOKUPS_PER_S,
        credentials: CredentialSource | None = None,
        supervisor: Supervisor | None = None,
        on_reload: Callable[[Mapping[str, AuthEntry]], None] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self._repository = repository
        self._clock = clock
        # Told the credentials after each reload (the OSCORE contexts drop stale ones).
        self._on_reload = on_reload
        self._budget = LookupBudget(lookups_per_s, clock=clock)
        self._credentials = credentials
        self._auth: dict[str, AuthEntry] = {}
        self._any_credentials = False
        self._refresh_s = refresh_s
        self._unknown_ttl_s = unknown_ttl_s
        self._types: dict[str, str] = {}
        # Only devices that have attributes, as compact JSON: what the sandbox request carries.
        self._attributes: dict[str, str] = {}
        self._revision = -1
        self._next_full = 0.0
        self._unknown: dict[str, float] = {}
        self._refresher = Periodic(
            self._refresh, interval_s=watch_s, name="device-directory", supervisor=supervisor
        )

    async def start(self) -> None:
        """Load every device, then keep the copy fresh."""
        await self.reload()
        self._refresher.start()

    async def stop(self) -> None:
        """Stop refreshing; idempotent."""
        await self._refresher.stop()

    async def reload(self) -> None:
        """Replace the copy with the registry as it is now."""
        # The revision is read first: a write that lands during the reload moves it again,
        # and the next watch reloads once more.
        revision = await self._repository.revision()
        devices = await self._repository.list()
        auth = await self._credentials.auth_entries() if self._credentials else {}
        self._types = {device.id: device.device_type for device in devices}
        self._attributes = {
            device.id: encode_attributes(device.attributes)
            for device in devices
            if device.attributes
        }
        self._auth = auth
        self._any_credentials = any(e.auth is not AuthKind.NONE for e in auth.values())
        self._revision = revision
        self._next_full = self._clock() + self._refresh_s
        if self._on_reload is not None:
            self._on_reload(auth)

    @property
    def any_credentials(self) -> bool:
        """Whether any device has credentials, as the in-memory copy has it."""
        return self._any_credentials

    async def _refresh(self) -> None:
        """Reload when the registry revision moved, or when the periodic full reload is due
        (the safety net for a write that did not move the revision)."""
        if self._clock() >= self._next_full:
            await self.reload()
        elif await self._repository.revision() != self._revision:
            log.info("device registry changed: reloading")
            await self.reload()

    def attributes_json(self, device_id: str | None) -> str:
        """The device's attributes as compact JSON, "" when it has none or is not
        registered (no query; at most `watch_s` and one reload old)."""
        if device_id is None:
            return ""
        return self._attributes.get(device_id, "")

    def auth_entry(self, device_id: str) -> AuthEntry:
        """How the device authenticates, as the in-memory copy has it (no query)."""
        return self._auth.get(device_id, NO_CREDENTIALS)

    def known_type(self, device_id: str) -> str | None:
        """The type as the in-memory copy has it (no query; at most `refresh_s` old)."""
        return self._types.get(device_id)

    async def device_type(self, device_id: str) -> str | None:
        """The type of a registered device, or None when it is not registered;
        DirectoryBusyError when it was not looked up (the lookup budget is spent)."""
        known = self._types.get(device_id)
        if known is not None:
            return known
        now = self._clock()
        if self._unknown.get(device_id, 0.0) > now:
            return None
        if not self._budget.take(now):
            raise DirectoryBusyError("too many lookups of unknown device ids; retry later")
        try:
            record = await self._repository.get(device_id)
        except NotFoundError:
            if len(self._unknown) >= MAX_UNKNOWN:
                self._unknown.clear()
            self._unknown[device_id] = now + self._unknown_ttl_s
            return None
        if self._credentials is not None:
            entry = await self._credentials.auth_entry(record.id)
            self._auth[record.id] = entry
            self._any_credentials |= entry.auth is not AuthKind.NONE
        if record.attributes:
            self._attributes[record.id] = encode_attributes(record.attributes)
        self._types[record.id] = record.device_type
        return record.device_type
