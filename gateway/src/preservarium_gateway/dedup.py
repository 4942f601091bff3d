"""A bounded CoAP deduplication cache for aiocoap's message manager, fair between senders.

aiocoap remembers every incoming request for EXCHANGE_LIFETIME (247 s) with a timer and
the full response message each, in a dict without bound: at thousands of contacts per
second that is hundreds of thousands of entries and timers, and a flood of cheap
requests grows it as far as the flooder likes. `BoundedDeduplication` replaces that
cache (aiocoap's own stays empty) with the same semantics: a retransmitted CON gets the
stored response again and duplicates are dropped, for EXCHANGE_LIFETIME, within the
bounds of `FairEntries`: a host keeps at most `source_entries` and evicts its own
(its busiest endpoint first), and over `max_entries` the host holding the most loses its
oldest. So a flood, however fast, evicts the flooder's own entries, not a device's.
Entries expire after `lifetime_s`, oldest first, with no timer per message.
"""

from __future__ import annotations

import time
from typing import Any

from aiocoap.numbers.types import CON

from preservarium_gateway.dtls import dtls_peer
from preservarium_gateway.fair_entries import FairEntries, Key, host_of
from preservarium_gateway.types import Clock


def endpoint_of(remote: Any) -> tuple[Any, ...]:
    """A sender's endpoint in plain values: aiocoap's UDP endpoint hashes in Python, at
    every dict operation, and compares exactly this part of its socket address; a DTLS
    session is its peer's (address, port)."""
    sockaddr = getattr(remote, "sockaddr", None)
    if sockaddr is None:
        return tuple(dtls_peer(remote)[:2])
    return tuple(sockaddr[:-1])


def key_of(message: Any) -> Key:
    """A message's key: its sender's endpoint and its message id."""
    return (endpoint_of(message.remote), message.mid)


class BoundedDeduplication:
    """Drop-in for aiocoap MessageManager's `_deduplicate_message` and response store."""

    def __init__(
        self,
        manager: Any,
        *,
        lifetime_s: float,
        max_entries: int,
        source_entries: int,
        clock: Clock = time.monotonic,
    ) -> None:
        self._manager = manager
        self._clock = clock
        self._lifetime_s = lifetime_s
        # key -> [deadline, response or None]
        self._entries = FairEntries(max_entries=max_entries, host_entries=source_entries)

    @classmethod
    def install(
        cls, context: Any, *, lifetime_s: float, max_entries: int, source_entries: int
    ) -> list[BoundedDeduplication]:
        """Replace the deduplication of every message manager of an aiocoap context."""
        installed = []
        for interface in context.request_interfaces:
            manager = getattr(interface, "token_interface", None)
            if manager is None or not hasattr(manager, "_recent_messages"):
                continue
            cache = cls(manager, lifetime_s=lifetime_s, max_entries=max_entries,
                        source_entries=source_entries)  # fmt: skip
            manager._deduplicate_message = cache.deduplicate
            manager._store_response_for_duplicates = cache.store_response
            installed.append(cache)
        if not installed:
            raise RuntimeError("aiocoap has no message manager to bound (aiocoap changed?)")
        return installed

    def __len__(self) -> int:
        return len(self._entries)

    def held_by(self, remote: Any) -> int:
        """Entries held for the host of `remote`."""
        return self._entries.held_by(host_of(endpoint_of(remote)))

    def deduplicate(self, message: Any) -> bool:
        """True when `message` was seen already (a stored response is sent again)."""
        key = key_of(message)
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None:
            if entry[0] > now:
                if message.mtype is CON and entry[1] is not None:
                    self._manager._send_initially(entry[1])
                return True
            self._entries.remove(key)
        self._expire(now)
        self._entries.add(key, [now + self._lifetime_s, None])
        return False

    def store_response(self, message: Any) -> None:
        """Remember the response to a request, for its retransmissions."""
        entry = self._entries.get(key_of(message))
        if entry is not None:
            entry[1] = message

    def _expire(self, now: float) -> None:
        while (oldest := self._entries.oldest()) is not None and oldest[1][0] <= now:
            self._entries.remove(oldest[0])
