"""OSCORE security contexts of devices, built from the credential registry on first use.

The kid of a protected request (the device's sender id) names the device. Its context
is read once (the master secret opened with the SecretBox, the keys derived) and kept
in memory, at most `max_entries` of them, least recently used first out. A kid that
names no context is remembered as unknown for a moment, and lookups of kids not held
share a budget (`LookupBudget`), so random kids cost no query each.

A context is dropped when its device's credentials change: on the directory's reload
(every few seconds, `retain`), and at once when its replay window has gone from the
database (rotation and removal delete it), which the first contact after the change
finds out.

The replay window in memory is a view of the persisted one (`SharedReplayWindow`):
aiocoap's `unprotect` asks it whether a number is fresh and refuses what it has seen;
the number is struck out in the database (`ReplayWindowStore.advance`), not here, once
the message has decrypted.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Protocol

from aiocoap import oscore
from preservarium.errors import NotFoundError
from preservarium.identity.kinds import AuthKind, OscoreMaterial
from preservarium.repositories.credentials import AuthEntry, OscoreContextRecord
from preservarium.repositories.replay_windows import WindowState

from preservarium_gateway.directory import LookupBudget
from preservarium_gateway.errors import DirectoryBusyError

DEFAULT_MAX_CONTEXTS = 50_000
MAX_UNKNOWN_KIDS = 100_000


class OscoreSource(Protocol):
    """Where contexts come from (SQLCredentialRepository is the real one)."""

    async def oscore_for_kid(self, kid: bytes) -> OscoreContextRecord | None:
        """The context whose device sends with `kid`, or None."""
        ...


class ReplayWindowStore(Protocol):
    """Where replay windows are kept (SQLReplayWindowRepository is the real one)."""

    async def state(self, kid: bytes) -> WindowState:
        """The stored window; NotFoundError when the context is gone."""
        ...

    async def advance(self, kid: bytes, seq: int, known: WindowState) -> tuple[bool, WindowState]:
        """Record `seq` as seen (False: a replay) and the newest window known;
        NotFoundError when the context is gone."""
        ...


class SharedReplayWindow:
    """What aiocoap's `unprotect` asks of a replay window, answered from the last window
    this gateway read or wrote. A number it refuses is refused by the database too (a
    window only moves forward); one it lets through is checked there (`advance`)."""

    def __init__(self, state: WindowState) -> None:
        self.state = state

    def is_initialized(self) -> bool:
        """Always: the window comes from the database, never from a guess."""
        return True

    def is_valid(self, number: int) -> bool:
        """Whether `number` may be fresh, as far as this gateway knows."""
        return self.state.window.is_fresh(number)

    def strike_out(self, number: int) -> None:
        """Nothing here: the database records the number (`ReplayWindowStore.advance`)."""


class DeviceSecurityContext(
    oscore.CanProtect,  # type: ignore[misc]
    oscore.CanUnprotect,  # type: ignore[misc]
    oscore.SecurityContextUtils,  # type: ignore[misc]
):
    """The gateway's side of one device's OSCORE context (RFC 8613 section 3).

    The gateway's recipient id is the device's sender id (the kid of its requests), and
    the other way round. Responses reuse the request's nonce (section 8.3), so the
    gateway never draws a sequence number of its own and has none to persist; a
    response that would need one (an Observe notification) is refused.
    """

    def __init__(self, record: OscoreContextRecord, window: WindowState) -> None:
        material: OscoreMaterial = record.material
        self.device_id = record.device_id
        self.alg_aead = oscore.algorithms[material.algorithm]
        self.hashfun = oscore.hashfunctions[material.hkdf]
        self.id_context = None
        self.sender_id = material.recipient_id
        self.recipient_id = material.sender_id
        self.echo_recovery = None
        self.sender_sequence_number = 0
        self.authenticated_claims = [record.device_id]
        self.recipient_replay_window = SharedReplayWindow(window)
        self.derive_keys(material.master_salt, material.master_secret)

    @property
    def kid(self) -> bytes:
        """The kid the device's requests carry."""
        return bytes(self.recipient_id)

    @property
    def window(self) -> SharedReplayWindow:
        """The replay window as this gateway last saw it."""
        window: SharedReplayWindow = self.recipient_replay_window
        return window

    def new_sequence_number(self) -> int:
        raise oscore.ContextUnavailable("the gateway answers only with the request's nonce")

    def post_seqnoincrease(self) -> None:
        raise oscore.ContextUnavailable("the gateway keeps no sequence number of its own")


class OscoreContexts:
    """Contexts by kid, loaded on first use and dropped when their credentials change."""

    def __init__(
        self,
        *,
        source: OscoreSource,
        windows: ReplayWindowStore,
        unknown_ttl_s: float,
        lookups_per_s: float,
        max_entries: int = DEFAULT_MAX_CONTEXTS,
    ) -> None:
        self._source = source
        self.windows = windows
        self._unknown_ttl_s = unknown_ttl_s
        self._budget = LookupBudget(lookups_per_s)
        self._max_entries = max_entries
        self._contexts: OrderedDict[bytes, DeviceSecurityContext] = OrderedDict()
        self._unknown: dict[bytes, float] = {}

    def __len__(self) -> int:
        return len(self._contexts)

    async def get(self, kid: bytes) -> DeviceSecurityContext | None:
        """The context for `kid`, or None when no device sends with it.

        DirectoryBusyError when it was not looked up (the lookup budget is spent);
        RepositoryError or SecretKeyError when it could not be read.
        """
        context = self._contexts.get(kid)
        if context is not None:
            self._contexts.move_to_end(kid)
            return context
        now = time.monotonic()
        if self._unknown.get(kid, 0.0) > now:
            return None
        if not self._budget.take(now):
            raise DirectoryBusyError("too many lookups of OSCORE kids not in memory; retry later")
        record = await self._source.oscore_for_kid(kid)
        try:
            window = None if record is None else await self.windows.state(kid)
        except NotFoundError:
            window = None
        if record is None or window is None:
            if len(self._unknown) >= MAX_UNKNOWN_KIDS:
                self._unknown.clear()
            self._unknown[kid] = now + self._unknown_ttl_s
            return None
        context = DeviceSecurityContext(record, window)
        self._contexts[kid] = context
        if len(self._contexts) > self._max_entries:
            self._contexts.popitem(last=False)
        return context

    def drop(self, kid: bytes) -> None:
        """Forget a context (its credentials changed)."""
        self._contexts.pop(kid, None)

    def retain(self, entries: Mapping[str, AuthEntry]) -> None:
        """Keep only contexts whose device still has OSCORE credentials with that kid."""
        for kid, context in list(self._contexts.items()):
            entry = entries.get(context.device_id)
            if entry is None or entry.auth is not AuthKind.OSCORE or entry.oscore_kid != kid.hex():
                del self._contexts[kid]
        self._unknown.clear()
