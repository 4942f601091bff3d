"""A bounded CoAP deduplication cache for aiocoap's message manager.

aiocoap remembers every incoming request for EXCHANGE_LIFETIME (247 s) with a timer and
the full response message each: at thousands of contacts per second that is hundreds of
thousands of entries and timers. This cache keeps the same semantics (a retransmitted
CON gets the stored response again; duplicates are dropped) within a fixed number of
entries, expiring the oldest first, with no timer per message.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

from aiocoap.numbers.types import CON


class BoundedDeduplication:
    """Drop-in for aiocoap MessageManager's `_deduplicate_message` and response store."""

    def __init__(self, manager: Any, *, lifetime_s: float, max_entries: int) -> None:
        self._manager = manager
        self._lifetime_s = lifetime_s
        self._max_entries = max_entries
        # (remote, mid) -> [deadline, response or None]
        self._entries: OrderedDict[tuple[Any, int], list[Any]] = OrderedDict()

    @classmethod
    def install(cls, context: Any, *, lifetime_s: float, max_entries: int) -> list[Any]:
        """Replace the deduplication of every message manager of an aiocoap context."""
        installed = []
        for interface in context.request_interfaces:
            manager = getattr(interface, "token_interface", None)
            if manager is None or not hasattr(manager, "_recent_messages"):
                continue
            cache = cls(manager, lifetime_s=lifetime_s, max_entries=max_entries)
            manager._deduplicate_message = cache.deduplicate
            manager._store_response_for_duplicates = cache.store_response
            installed.append(cache)
        if not installed:
            raise RuntimeError("aiocoap has no message manager to bound (aiocoap changed?)")
        return installed

    def __len__(self) -> int:
        return len(self._entries)

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            key, entry = next(iter(entries.items()))
            if entry[0] > now and len(entries) <= self._max_entries:
                return
            del entries[key]

    def deduplicate(self, message: Any) -> bool:
        """True when `message` was seen already (a stored response is sent again)."""
        key = (message.remote, message.mid)
        entry = self._entries.get(key)
        now = time.monotonic()
        if entry is not None and entry[0] > now:
            if message.mtype is CON and entry[1] is not None:
                self._manager._send_initially(entry[1])
            return True
        self._entries[key] = [now + self._lifetime_s, None]
        self._entries.move_to_end(key)
        self._expire(now)
        return False

    def store_response(self, message: Any) -> None:
        """Remember the response to a request, for its retransmissions."""
        entry = self._entries.get((message.remote, message.mid))
        if entry is not None:
            entry[1] = message
