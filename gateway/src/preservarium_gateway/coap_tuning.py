"""Per-request costs of aiocoap 0.4.17 that the gateway does not need to pay.

Profiling the gateway under load (cProfile, `make bench` full path) showed about a tenth
of its CPU spent on two things aiocoap does for every request:

- `Context.render_to_pipe` names the rendering task `"Rendering for %r" % request`, and
  the repr of a request formats both endpoint addresses through `ipaddress` and
  `socket.if_indextoname`, a system call;
- the UDP transport re-parses the peer's address with `ipaddress` several times per
  message (`is_multicast`, `is_multicast_locally`, `hostinfo`).

`GatewayContext` names the task without the repr; `install()` memoizes the address
helpers (pure functions of the address) in bounded caches. Neither changes what aiocoap
answers: tests compare the memoized helpers with the originals.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

import aiocoap
from aiocoap.pipe import error_to_message, run_driving_pipe
from aiocoap.transports.udp6 import UDP6EndpointAddress

ADDRESS_CACHE = 4096


class GatewayContext(aiocoap.Context):  # type: ignore[misc]
    """aiocoap's Context, minus the repr of every request for its task name."""

    def render_to_pipe(self, pipe: Any) -> None:
        """As aiocoap's own, with a constant task name."""
        run_driving_pipe(
            error_to_message(pipe, self.log), self._render_to_pipe(pipe), name="coap render"
        )


@functools.lru_cache(maxsize=ADDRESS_CACHE)
def _is_multicast(address: str) -> bool:
    return ipaddress.ip_address(address).is_multicast


def _remote_is_multicast(self: Any) -> bool:
    return _is_multicast(self._plainaddress().split("%", 1)[0])


def _local_is_multicast(self: Any) -> bool:
    return _is_multicast(self._plainaddress_local())


_ORIGINAL_STRIP = UDP6EndpointAddress.__dict__["_strip_v4mapped"]


def install() -> None:
    """Memoize the UDP transport's address helpers (idempotent; process-wide)."""
    if getattr(UDP6EndpointAddress, "_preservarium_tuned", False):
        return
    strip = _ORIGINAL_STRIP.__func__
    UDP6EndpointAddress._strip_v4mapped = staticmethod(
        functools.lru_cache(maxsize=ADDRESS_CACHE)(strip)
    )
    UDP6EndpointAddress.is_multicast = property(_remote_is_multicast)
    UDP6EndpointAddress.is_multicast_locally = property(_local_is_multicast)
    UDP6EndpointAddress._preservarium_tuned = True


def original_strip_v4mapped(address: Any) -> str:
    """aiocoap's own `_strip_v4mapped` (for tests comparing the two)."""
    result: str = _ORIGINAL_STRIP.__func__(address)
    return result
