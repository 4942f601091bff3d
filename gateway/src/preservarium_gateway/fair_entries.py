"""A bounded map whose entries belong to senders, where a sender can only crowd out itself.

Every entry belongs to an endpoint (address and port), every endpoint to a host (an IPv4
address, or an IPv6 /64, which one sender typically holds whole). Bounds:

- a host keeps at most `host_entries`; a host over its quota loses the oldest entry of
  its own endpoint holding the most (so a flooding socket evicts itself, not a device
  behind the same address);
- all hosts together keep at most `max_entries`; over that, the host holding the most
  loses an entry the same way.

"Holding the most" is found in O(1) (`Sizes`), so the bounds cost a few dict operations
per entry whatever the number of senders. Entries also keep their global arrival order,
for expiry by age.
"""

from __future__ import annotations

import socket
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

Key = tuple[Any, int]  # (endpoint, a number unique per endpoint), e.g. a CoAP message id


def host_of(endpoint: tuple[Any, ...]) -> str:
    """The host an endpoint `(address, port, ...)` belongs to: IPv4 address or IPv6 /64."""
    address: str = endpoint[0]
    if address.startswith("::ffff:") or ":" not in address:
        return address
    try:
        packed = socket.inet_pton(socket.AF_INET6, address.split("%", 1)[0])
    except OSError:
        return address
    return packed[:8].hex()


class Sizes:
    """How many entries each owner holds, and which holds the most, in O(1)."""

    def __init__(self) -> None:
        self._by_size: dict[int, set[Hashable]] = {}
        self.largest = 0

    def moved(self, owner: Hashable, before: int, after: int) -> None:
        """`owner` went from `before` to `after` entries (the two differ by one)."""
        if before:
            owners = self._by_size[before]
            owners.discard(owner)
            if not owners:
                del self._by_size[before]
                if before == self.largest and after < before:
                    self.largest = after
        if after:
            self._by_size.setdefault(after, set()).add(owner)
            self.largest = max(self.largest, after)

    def a_largest(self) -> Any:
        """An owner holding the most entries."""
        return next(iter(self._by_size[self.largest]))


class _Host:
    __slots__ = ("count", "endpoints", "sizes")

    def __init__(self) -> None:
        self.count = 0
        self.endpoints: dict[Any, OrderedDict[Key, None]] = {}
        self.sizes = Sizes()


class FairEntries:
    """key -> value, bounded per host and in all, oldest first; keys are `(endpoint, n)`."""

    def __init__(self, *, max_entries: int, host_entries: int) -> None:
        self._max_entries = max(1, max_entries)
        self._host_entries = max(1, min(host_entries, self._max_entries))
        self._values: OrderedDict[Key, tuple[str, Any]] = OrderedDict()  # key -> (host, value)
        self._hosts: dict[str, _Host] = {}
        self._host_sizes = Sizes()

    def __len__(self) -> int:
        return len(self._values)

    def get(self, key: Key) -> Any:
        """The value for `key`, or None."""
        found = self._values.get(key)
        return None if found is None else found[1]

    def oldest(self) -> tuple[Key, Any] | None:
        """The entry added first, or None when empty."""
        if not self._values:
            return None
        key, (_, value) = next(iter(self._values.items()))
        return key, value

    def held_by(self, host: str) -> int:
        """Entries held for `host`."""
        found = self._hosts.get(host)
        return 0 if found is None else found.count

    def add(self, key: Key, value: Any) -> None:
        """Add a new key (not present), first making room within the bounds."""
        host_id = host_of(key[0])
        host = self._hosts.get(host_id)
        if host is not None and host.count >= self._host_entries:
            self._evict_from(host_id, host, key[0])
        if len(self._values) >= self._max_entries:
            host = self._hosts.get(host_id)
            if host is not None and host.count >= self._host_sizes.largest:
                self._evict_from(host_id, host, key[0])  # it is among the largest itself
            else:
                largest = self._host_sizes.a_largest()
                self._evict_from(largest, self._hosts[largest], None)
        host = self._hosts.get(host_id)
        if host is None:
            host = self._hosts[host_id] = _Host()
        held = host.endpoints.get(key[0])
        if held is None:
            held = host.endpoints[key[0]] = OrderedDict()
        held[key] = None
        host.sizes.moved(key[0], len(held) - 1, len(held))
        host.count += 1
        self._host_sizes.moved(host_id, host.count - 1, host.count)
        self._values[key] = (host_id, value)

    def remove(self, key: Key) -> None:
        """Forget `key` (present)."""
        host_id = self._values.pop(key)[0]
        host = self._hosts[host_id]
        held = host.endpoints[key[0]]
        del held[key]
        self._shrunk(host_id, host, key[0], held)

    def _evict_from(self, host_id: str, host: _Host, prefer: Any) -> None:
        """Drop the oldest entry of the host's largest endpoint (`prefer` on a tie)."""
        held = host.endpoints.get(prefer)
        endpoint = prefer
        if held is None or len(held) < host.sizes.largest:
            endpoint = host.sizes.a_largest()
            held = host.endpoints[endpoint]
        key, _ = held.popitem(last=False)
        del self._values[key]
        self._shrunk(host_id, host, endpoint, held)

    def _shrunk(
        self, host_id: str, host: _Host, endpoint: Any, held: OrderedDict[Key, None]
    ) -> None:
        host.sizes.moved(endpoint, len(held) + 1, len(held))
        if not held:
            del host.endpoints[endpoint]
        host.count -= 1
        self._host_sizes.moved(host_id, host.count + 1, host.count)
        if not host.count:
            del self._hosts[host_id]
