"""The memoized aiocoap address helpers answer exactly as aiocoap's own (unit level)."""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest
from aiocoap.transports.udp6 import UDP6EndpointAddress
from preservarium_gateway import coap_tuning


class _Interface:
    """Stands in for the transport a UDP6 address points back to (weakly)."""


INTERFACE = _Interface()
ADDRESSES = ["::ffff:127.0.0.1", "::1", "2001:db8::1", "::ffff:224.0.1.187", "ff05::fd",
             "fe80::1", "::ffff:10.1.2.3"]  # fmt: skip


def _endpoint(host: str, *, local: str | None = None) -> UDP6EndpointAddress:
    pktinfo = None
    if local is not None:
        pktinfo = socket.inet_pton(socket.AF_INET6, local) + struct.pack("I", 0)
    return UDP6EndpointAddress((host, 5683, 0, 0), INTERFACE, pktinfo=pktinfo)


@pytest.fixture(scope="module", autouse=True)
def tuned() -> None:
    coap_tuning.install()
    coap_tuning.install()  # idempotent


@pytest.mark.parametrize("host", ADDRESSES)
def test_memoized_helpers_match_aiocoap(host: str) -> None:
    packed = socket.inet_pton(socket.AF_INET6, host)
    for address in (host, packed):
        assert UDP6EndpointAddress._strip_v4mapped(address) == (
            coap_tuning.original_strip_v4mapped(address)
        )
    endpoint = _endpoint(host, local=host)
    plain = coap_tuning.original_strip_v4mapped(host)
    assert endpoint.is_multicast is ipaddress.ip_address(plain).is_multicast
    assert endpoint.is_multicast_locally is ipaddress.ip_address(plain).is_multicast
    assert endpoint.hostinfo in (plain, f"[{plain}]")


def test_multicast_is_told_apart() -> None:
    assert _endpoint("::ffff:224.0.1.187").is_multicast
    assert _endpoint("ff05::fd").is_multicast
    assert not _endpoint("::ffff:127.0.0.1").is_multicast
    assert _endpoint("::1", local="ff02::fd").is_multicast_locally
