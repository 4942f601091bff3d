"""The gateway's first look at each UDP datagram, before aiocoap's message layer.

aiocoap 0.4.17's UDP transport decodes whatever arrives: a datagram of 4 KiB of options
passes although payloads are capped, an option that must be text but is not UTF-8
(Uri-Path, Uri-Query) raises out of the transport (a traceback per datagram, and no
answer), and each unparsable datagram writes a warning. `DatagramGuard` takes over the
transport's `datagram_msg_received` and sorts every datagram first:

- **oversize**: over `GatewayLimits.max_datagram_bytes` (the payload limit, plus an
  allowance for options, plus header and token), or cut short by the socket. A request
  whose header is readable is answered `4.13` with Size1 naming the payload limit
  (RFC 7252 5.9.2.9; the answer is smaller than the request, so it amplifies nothing);
  anything else is dropped. Nothing of it reaches aiocoap.
- **bad_text**: an option that must be UTF-8 text is not. A request is answered `4.00`;
  anything else is dropped.
- **unparsable**: not a CoAP message (RFC 7252 message format error, a token longer than
  8 bytes or cut short included): dropped, as aiocoap does.
- **internal**: aiocoap raised while decoding or dispatching a message: dropped.

Requests to a multicast address get no error answer (RFC 7252 8.1). Each refusal counts
in `preservarium_gateway_datagrams_refused_total{cause}` and is logged at most once per
cause per interval, with the count held back (`LogThrottle`). Everything else goes to
aiocoap exactly as its own transport would hand it over.

The DTLS listener's records are decrypted by tinydtls first; each CoAP message inside
goes through the same sorting (`plaintext_received`, in place of aiocoap's
`_received_datagram`), with its answers sent back through the DTLS session.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import aiocoap
from aiocoap import error
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import ACK, CON, NON
from aiocoap.transports.udp6 import UDP6EndpointAddress

from preservarium_gateway.dtls import dtls_peer
from preservarium_gateway.log_throttle import LogThrottle
from preservarium_gateway.metrics import GatewayMetrics

log = logging.getLogger("preservarium.gateway.datagrams")
HEADER_BYTES = 4
MAX_TOKEN_BYTES = 8
REQUEST_CODES = range(1, 32)  # class 0, detail 1..31: requests (0.00 is Empty)


def _pktinfo(ancdata: list[tuple[int, int, bytes]]) -> bytes | None:
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
            return data
    return None


def _token_fits(data: bytes) -> bool:
    """aiocoap takes a token length of 9..15, or a token cut short, as it comes."""
    token_length = data[0] & 0x0F
    return token_length <= MAX_TOKEN_BYTES and len(data) >= HEADER_BYTES + token_length


def request_header(data: bytes) -> tuple[int, int, bytes] | None:
    """(type, message id, token) of a CON or NON request whose header reads, else None."""
    if len(data) < HEADER_BYTES or data[0] >> 6 != 1 or data[1] not in REQUEST_CODES:
        return None
    mtype, token_length = data[0] >> 4 & 3, data[0] & 0x0F
    if mtype not in (CON, NON) or not _token_fits(data):
        return None
    mid = int.from_bytes(data[2:4], "big")
    return mtype, mid, bytes(data[HEADER_BYTES : HEADER_BYTES + token_length])


class DatagramGuard:
    """Sorts the datagrams of one aiocoap UDP transport before aiocoap decodes them."""

    def __init__(
        self,
        transport: Any,
        *,
        max_bytes: int,
        payload_bytes: int,
        metrics: GatewayMetrics,
        throttle: LogThrottle,
    ) -> None:
        # aiocoap's MessageInterfaceUDP6, or the DTLS listener's plaintext interface
        self._transport = transport
        self._manager = getattr(transport, "_ctx", None) or transport._mman  # MessageManager
        self._max_bytes = max_bytes
        self._payload_bytes = payload_bytes
        self._metrics = metrics
        self._throttle = throttle

    @classmethod
    def install(
        cls,
        context: Any,
        *,
        max_bytes: int,
        payload_bytes: int,
        metrics: GatewayMetrics,
        throttle: LogThrottle,
    ) -> list[DatagramGuard]:
        """Put a guard in front of every UDP (or DTLS plaintext) transport of a context."""
        guards = []
        for interface in context.request_interfaces:
            manager = getattr(interface, "token_interface", None)
            transport = getattr(manager, "message_interface", None)
            udp = hasattr(transport, "datagram_msg_received")
            if transport is None or not (udp or hasattr(transport, "_received_datagram")):
                continue
            guard = cls(transport, max_bytes=max_bytes, payload_bytes=payload_bytes,
                        metrics=metrics, throttle=throttle)  # fmt: skip
            # Both are looked up on the instance at each datagram (the socket's transport
            # calls the protocol's method; the DTLS layer calls the interface's).
            if udp:
                transport.datagram_msg_received = guard.datagram_msg_received
            else:
                transport._received_datagram = guard.plaintext_received
            guards.append(guard)
        if not guards:
            raise RuntimeError("aiocoap has no UDP transport to guard (aiocoap changed?)")
        return guards

    def datagram_msg_received(
        self, data: bytes, ancdata: list[tuple[int, int, bytes]], flags: int, address: Any
    ) -> None:
        """One datagram from the socket: refuse it, or decode it and hand it to aiocoap."""
        remote = UDP6EndpointAddress(address, self._transport, pktinfo=_pktinfo(ancdata))
        self._sort(data, remote, truncated=bool(flags & socket.MSG_TRUNC))

    def plaintext_received(self, remote: Any, data: bytes) -> None:
        """One CoAP message out of a DTLS record: refuse it, or hand it to aiocoap."""
        self._sort(data, remote, truncated=False)

    def _sort(self, data: bytes, remote: Any, *, truncated: bool) -> None:
        if len(data) > self._max_bytes or truncated:
            self._refuse("oversize", remote)
            self._answer(data, remote, Code.REQUEST_ENTITY_TOO_LARGE, size1=self._payload_bytes)
            return
        if data and not _token_fits(data):
            self._refuse("unparsable", remote)
            return
        try:
            message = aiocoap.Message.decode(data, remote)
        except error.UnparsableMessage:
            self._refuse("unparsable", remote)
            return
        except UnicodeDecodeError:
            self._refuse("bad_text", remote)
            self._answer(data, remote, Code.BAD_REQUEST, text="an option is not UTF-8 text")
            return
        except Exception as exc:  # none seen in fuzzing; kept out of asyncio's log all the same
            self._refuse("internal", remote, exc)
            return
        try:
            self._manager.dispatch_message(message)
        except Exception as exc:  # aiocoap's own transport would let asyncio log it
            self._refuse("internal", remote, exc)

    def _refuse(self, cause: str, remote: Any, exc: Exception | None = None) -> None:
        self._metrics.child(self._metrics.datagrams_refused, cause).inc()
        suppressed = self._throttle.admit(cause)
        if suppressed is not None:
            log.warning("datagram refused", exc_info=exc, extra={
                "cause": cause, "remote": _host(remote), "suppressed": suppressed})  # fmt: skip

    def _answer(
        self, data: bytes, remote: Any, code: Code, *, text: str = "", size1: int | None = None
    ) -> None:
        header = request_header(data)
        if header is None or remote.is_multicast_locally:
            return
        mtype, mid, token = header
        message = aiocoap.Message(code=code, payload=text.encode())
        message.token = token
        message.mtype = ACK if mtype == CON else NON
        message.mid = mid if mtype == CON else self._manager._next_message_id()
        message.remote = remote
        if size1 is not None:
            message.opt.size1 = size1
        try:
            self._transport.send(message)
        except OSError:  # the socket is full or closing: the refusal is counted already
            return


def _host(remote: Any) -> str:
    sockaddr = getattr(remote, "sockaddr", None) or dtls_peer(remote)
    host: str = sockaddr[0]
    return host.removeprefix("::ffff:")
