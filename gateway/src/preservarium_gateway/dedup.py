"""A bounded CoAP deduplication cache for aiocoap's message manager, fair between senders.

aiocoap remembers every incoming request for EXCHANGE_LIFETIME (247 s) with a timer and
the full response message each, in a dict without bound: at thousands of contacts per
second that is hundreds of thousands of entries and timers, and a flood of cheap
requests grows it as far as the flooder likes. `BoundedDeduplication` replaces that
cache (aiocoap's own stays empty) with the same semantics: a retransmitted CON gets the
stored response again and duplicates are dropped, for EXCHANGE_LIFETIME, within bounds:

- each source (an IPv4 address, or an IPv6 /64, which one sender typically holds whole)
  keeps at most `source_entries`; a source over its quota evicts its own oldest entry;
- all sources together keep at most `max_entries`; over that, the source holding the
  most entries loses its oldest.

So one sender, however fast, evicts only its own entries, and many senders evict the
largest first: a device's retransmission meets its entry unless the cache is full of
sources as small as that device. Entries expire after `lifetime_s`, oldest first, with
no timer per message.
"""

from __future__ import annotations

import socket
import time
from collections import OrderedDict
from typing import Any

from aiocoap.numbers.types import CON

Key = tuple[Any, int]  # (the sender's address and port, message id)


def key_of(message: Any) -> Key:
    """A message's key in plain values: aiocoap's UDP endpoint hashes in Python, at every
    dict operation, and compares exactly this part of its socket address."""
    return (message.remote.sockaddr[:-1], message.mid)


def source_of(remote: Any) -> str:
    """The sender a quota is kept for: the IPv4 address, or the IPv6 /64."""
    host: str = remote.sockaddr[0]
    if host.startswith("::ffff:") or ":" not in host:
        return host
    try:
        packed = socket.inet_pton(socket.AF_INET6, host.split("%", 1)[0])
    except OSError:
        return host
    return packed[:8].hex()


class SourceSizes:
    """How many entries each source holds, and which holds the most, in O(1)."""

    def __init__(self) -> None:
        self._by_size: dict[int, set[str]] = {}
        self.largest = 0

    def moved(self, source: str, before: int, after: int) -> None:
        """`source` went from `before` to `after` entries (the two differ by one)."""
        if before:
            sources = self._by_size[before]
            sources.discard(source)
            if not sources:
                del self._by_size[before]
                if before == self.largest:
                    self.largest = after if after < before else self.largest
        if after:
            self._by_size.setdefault(after, set()).add(source)
            self.largest = max(self.largest, after)

    def a_largest(self) -> str:
        """A source holding the most entries."""
        return next(iter(self._by_size[self.largest]))


class BoundedDeduplication:
    """Drop-in for aiocoap MessageManager's `_deduplicate_message` and response store."""

    def __init__(
        self, manager: Any, *, lifetime_s: float, max_entries: int, source_entries: int
    ) -> None:
        self._manager = manager
        self._lifetime_s = lifetime_s
        self._max_entries = max_entries
        self._source_entries = max(1, min(source_entries, max_entries))
        # key -> [deadline, response or None, source], oldest first
        self._entries: OrderedDict[Key, list[Any]] = OrderedDict()
        self._sources: dict[str, OrderedDict[Key, None]] = {}
        self._sizes = SourceSizes()

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
        """Entries held for the source of `remote`."""
        return len(self._sources.get(source_of(remote), ()))

    def deduplicate(self, message: Any) -> bool:
        """True when `message` was seen already (a stored response is sent again)."""
        key = key_of(message)
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None:
            if entry[0] > now:
                if message.mtype is CON and entry[1] is not None:
                    self._manager._send_initially(entry[1])
                return True
            self._remove(key)
        self._expire(now)
        self._add(key, source_of(message.remote), now + self._lifetime_s)
        return False

    def store_response(self, message: Any) -> None:
        """Remember the response to a request, for its retransmissions."""
        entry = self._entries.get(key_of(message))
        if entry is not None:
            entry[1] = message

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            key, entry = next(iter(entries.items()))
            if entry[0] > now:
                return
            self._remove(key)

    def _add(self, key: Key, source: str, deadline: float) -> None:
        held = self._sources.get(source)
        if held is not None and len(held) >= self._source_entries:
            self._evict_oldest(source, held)
        if len(self._entries) >= self._max_entries:
            held = self._sources.get(source)
            if held is None or len(held) < self._sizes.largest:  # else: among the largest
                source_to_trim = self._sizes.a_largest()
                self._evict_oldest(source_to_trim, self._sources[source_to_trim])
            else:
                self._evict_oldest(source, held)
        held = self._sources.setdefault(source, OrderedDict())
        held[key] = None
        self._sizes.moved(source, len(held) - 1, len(held))
        self._entries[key] = [deadline, None, source]

    def _evict_oldest(self, source: str, held: OrderedDict[Key, None]) -> None:
        key, _ = held.popitem(last=False)
        del self._entries[key]
        self._shrunk(source, held)

    def _remove(self, key: Key) -> None:
        source = self._entries.pop(key)[2]
        held = self._sources[source]
        del held[key]
        self._shrunk(source, held)

    def _shrunk(self, source: str, held: OrderedDict[Key, None]) -> None:
        self._sizes.moved(source, len(held) + 1, len(held))
        if not held:
            del self._sources[source]
