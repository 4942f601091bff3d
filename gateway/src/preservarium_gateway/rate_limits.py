"""Contact rates per key (a device, a source address): token buckets, bounded in number.

Each key has a bucket holding one minute's worth of contacts, refilled continuously. A
contact over the rate is answered 4.29 with Max-Age saying when the next one fits. The
buckets are kept in insertion-refreshed order and the least recently used is dropped
beyond `max_entries`, so a sender cycling through addresses cannot grow the table (a
dropped key starts over with a full bucket, which only ever errs towards letting in).
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict

from preservarium_gateway.types import Clock


class KeyedRateLimiter:
    """At most `per_min` events per key per minute; `per_min == 0` means no limit."""

    def __init__(self, *, per_min: int, max_entries: int, clock: Clock = time.monotonic) -> None:
        self._per_s = per_min / 60.0
        self._capacity = float(per_min)
        self._max_entries = max_entries
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        """Whether this limiter limits anything."""
        return self._capacity > 0

    def retry_after(self, key: str) -> int | None:
        """Seconds until `key` may go on (None: it may now), without spending."""
        if not self.enabled:
            return None
        tokens = self._tokens(key)
        if tokens >= 1:
            return None
        return max(1, math.ceil((1 - tokens) / self._per_s))

    def take(self, key: str) -> int | None:
        """Spend one event of `key`: None when it fits, else seconds until one does."""
        wait = self.retry_after(key)
        if wait is None and self.enabled:
            self._buckets[key] = (self._tokens(key) - 1, self._clock())
            self._buckets.move_to_end(key)
            if len(self._buckets) > self._max_entries:
                self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)

    def _tokens(self, key: str) -> float:
        held = self._buckets.get(key)
        if held is None:
            return self._capacity
        tokens, at = held
        return min(self._capacity, tokens + (self._clock() - at) * self._per_s)


def source_key(remote: str) -> str:
    """The rate key of a sender `ip:port` / `[ip6]:port`: the IPv4 address, or the IPv6 /64
    (one host easily holds a whole /64, so per-address limits would not hold it)."""
    host, sep, _ = remote.rpartition(":")
    if not sep:
        return remote
    if not host.startswith("["):  # IPv4, the common case: no parsing on the hot path
        return host
    try:
        address = ipaddress.IPv6Address(host.strip("[]"))
    except ValueError:
        return host
    return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))
