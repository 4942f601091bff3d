"""How many contacts the gateway handles at once, in all and per source host.

Every contact holds a task, a sandbox call and a Kafka send for up to the sandbox and
publish timeouts (seconds when either is slow). Nothing else bounds how many run at
once: a peer sending NON or fresh-id CON datagrams as fast as UDP goes would grow them
without limit, in memory and in work queued on the sandbox and the broker. `InFlightLimit`
caps contacts in flight per source host (an IPv4 address or an IPv6 /64, as the
deduplication quotas count), so one sender cannot take the gateway's whole capacity,
and in all. A contact over a cap is answered 5.03 with Max-Age at once, before any work.
"""

from __future__ import annotations

from typing import Any

from preservarium_gateway.fair_entries import host_of


class InFlightLimit:
    """Counts contacts in flight; refuses one over `total` or over `per_host` for its host."""

    def __init__(self, *, total: int, per_host: int) -> None:
        self._total = total
        self._per_host = per_host
        self._count = 0
        self._by_host: dict[str, int] = {}

    def __len__(self) -> int:
        return self._count

    def admit(self, host: str) -> bool:
        """Take a place for a contact from `host`; False when there is none."""
        held = self._by_host.get(host, 0)
        if self._count >= self._total or held >= self._per_host:
            return False
        self._by_host[host] = held + 1
        self._count += 1
        return True

    def release(self, host: str) -> None:
        """The contact from `host` is answered."""
        self._count -= 1
        held = self._by_host[host] - 1
        if held:
            self._by_host[host] = held
        else:
            del self._by_host[host]  # the dict holds only hosts with contacts in flight


def source_host(request: Any) -> str:
    """The host a request came from ("?" when the transport gives no address)."""
    try:
        return host_of(request.remote.sockaddr)
    except (AttributeError, IndexError, TypeError):
        return "?"
