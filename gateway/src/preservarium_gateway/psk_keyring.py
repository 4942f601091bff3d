"""DTLS pre-shared keys for the tinydtls handshake, from the credential repository.

tinydtls asks for a key synchronously, from inside its handshake code, so the keys
must already be in memory. The keyring loads every PSK at start and reloads them all
every `refresh_s`; the listener also calls `fetch()` for the identity a client presents
before tinydtls asks, so a new, rotated or removed key counts from the next handshake.
When that was not possible (too many fetches at once), a miss fetches the identity in
the background, and the device's next handshake finds it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Protocol

from preservarium.errors import PreservariumError
from preservarium.identity.kinds import DTLS_PSK_MAX_BYTES
from preservarium.lifecycle import AsyncLifecycle

log = logging.getLogger("preservarium.gateway.dtls")

# A peer can put any identity in a datagram, from any address: identities looked up and
# not found are not looked up again for this long, at most this many lookups run at
# once, and at most this many start per second, so datagrams cannot flood the database.
MISS_TTL_S = 10.0
MAX_PENDING_LOOKUPS = 32
MAX_LOOKUPS_PER_S = 100.0


class PskSource(Protocol):
    """Where the keys come from (SQLCredentialRepository is the real one)."""

    async def all_psks(self) -> dict[str, bytes]:
        """Every PSK device's key by identity."""
        ...

    async def psk_for_identity(self, identity: str) -> bytes | None:
        """One device's key, or None."""
        ...


@dataclass(frozen=True, slots=True)
class PskClaim:
    """What a DTLS session proved: the peer holds the PSK of this device."""

    device_id: str


class PskKeyring(AsyncLifecycle):
    """aiocoap `server_credentials` for the tinydtls server: `find_dtls_psk` from memory."""

    def __init__(self, *, source: PskSource, refresh_s: float = 300.0) -> None:
        self._source = source
        self._refresh_s = refresh_s
        self._keys: dict[str, bytes] = {}
        self._misses: dict[str, float] = {}
        self._pending: dict[str, asyncio.Task[None]] = {}
        self._fetching = 0
        self._budget = MAX_LOOKUPS_PER_S
        self._budget_at = time.monotonic()
        self._refresher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load every key, then keep reloading them in the background."""
        await self.refresh()
        self._refresher = asyncio.create_task(self._refresh_forever(), name="psk keyring")

    async def stop(self) -> None:
        """Stop reloading and looking up; idempotent."""
        tasks = [*self._pending.values(), *([self._refresher] if self._refresher else [])]
        self._refresher = None
        self._pending.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def refresh(self) -> None:
        """Replace the keys in memory with the repository's."""
        self._keys = await self._source.all_psks()
        self._misses.clear()

    def should_fetch(self, identity: bytes) -> bool:
        """Whether a lookup of this identity may start now; counts it if so."""
        missed_at = self._misses.get(identity.decode("utf-8", errors="replace"))
        if missed_at is not None and time.monotonic() - missed_at < MISS_TTL_S:
            return False
        if self._fetching + len(self._pending) >= MAX_PENDING_LOOKUPS:
            return False
        return self._spend()

    def _spend(self) -> bool:
        # A token bucket of one second's worth of lookups.
        now = time.monotonic()
        refill = (now - self._budget_at) * MAX_LOOKUPS_PER_S
        self._budget, self._budget_at = min(MAX_LOOKUPS_PER_S, self._budget + refill), now
        if self._budget < 1:
            return False
        self._budget -= 1
        return True

    async def fetch(self, identity: bytes) -> None:
        """Bring one identity's key up to date (removed if it has none any more)."""
        device_id = identity.decode("utf-8", errors="replace")
        self._fetching += 1
        try:
            key = await self._source.psk_for_identity(device_id)
        except PreservariumError as exc:
            log.warning("psk lookup failed, keeping the key in memory: %s", exc)
            return
        finally:
            self._fetching -= 1
        if key is None:
            self._keys.pop(device_id, None)
            self._misses[device_id] = time.monotonic()
        else:
            self._keys[device_id] = key

    def find_dtls_psk(self, identity: bytes) -> tuple[bytes, PskClaim]:
        """The key and claim of a PSK identity, as aiocoap asks; KeyError if unknown."""
        device_id = identity.decode("utf-8", errors="replace")
        key = self._keys.get(device_id)
        if key is not None and len(key) > DTLS_PSK_MAX_BYTES:
            # DTLSSocket copies the key into tinydtls's 16-byte buffer without a bound.
            log.warning("psk of %s is longer than tinydtls accepts; refused", device_id)
            raise KeyError(device_id)
        if key is None:
            self._look_up_later(device_id)
            raise KeyError(device_id)
        return key, PskClaim(device_id)

    def __bool__(self) -> bool:
        # aiocoap replaces falsy server credentials with an empty map.
        return True

    def _look_up_later(self, device_id: str) -> None:
        if device_id in self._pending or not self.should_fetch(device_id.encode()):
            return
        self._pending[device_id] = asyncio.get_running_loop().create_task(
            self._look_up(device_id), name="psk lookup"
        )

    async def _look_up(self, device_id: str) -> None:
        try:
            await self.fetch(device_id.encode())
        finally:
            self._pending.pop(device_id, None)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s)
            try:
                await self.refresh()
            except PreservariumError as exc:
                log.warning("psk keyring reload failed, keeping the keys in memory: %s", exc)
