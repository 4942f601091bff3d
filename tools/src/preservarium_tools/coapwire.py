"""A small CoAP (RFC 7252) codec and UDP client: for the simulator, tests and benchmarks.

It speaks the wire format directly so it can drive the gateway faster than aiocoap's own
client, and so the sdk needs no CoAP library.
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from preservarium.lifecycle import AsyncLifecycle

CON, NON, ACK, RST = 0, 1, 2, 3
GET, POST, PUT, DELETE = 1, 2, 3, 4
URI_PATH, CONTENT_FORMAT, MAX_AGE, URI_QUERY, BLOCK1, SIZE1 = 11, 12, 14, 15, 27, 60


def code_number(dotted: str) -> int:
    """`2.05` -> 69."""
    klass, detail = dotted.split(".")
    return int(klass) << 5 | int(detail)


def dotted(code: int) -> str:
    """69 -> `2.05`."""
    return f"{code >> 5}.{code & 31:02d}"


class CoapFormatError(ValueError):
    """Bytes that are not a CoAP message."""


@dataclass(frozen=True, slots=True)
class CoapMessage:
    """One CoAP message."""

    mtype: int
    code: int
    mid: int
    token: bytes = b""
    options: tuple[tuple[int, bytes], ...] = ()
    payload: bytes = b""

    @property
    def dotted_code(self) -> str:
        """The code as `c.dd`."""
        return dotted(self.code)

    def option(self, number: int) -> bytes | None:
        """The first value of an option, or None."""
        for key, value in self.options:
            if key == number:
                return value
        return None

    def uint_option(self, number: int) -> int | None:
        """An unsigned-integer option's value."""
        raw = self.option(number)
        return None if raw is None else int.from_bytes(raw, "big")


def _option_part(value: int) -> tuple[int, bytes]:
    if value < 13:
        return value, b""
    if value < 269:
        return 13, bytes([value - 13])
    return 14, struct.pack(">H", value - 269)


def encode(message: CoapMessage) -> bytes:
    """The datagram for `message`."""
    if len(message.token) > 8:
        raise ValueError("token longer than 8 bytes")
    out = (
        bytearray([0x40 | message.mtype << 4 | len(message.token), message.code])
        + struct.pack(">H", message.mid)
        + message.token
    )
    previous = 0
    for number, value in sorted(message.options, key=lambda item: item[0]):
        delta, delta_ext = _option_part(number - previous)
        length, length_ext = _option_part(len(value))
        out += bytes([delta << 4 | length]) + delta_ext + length_ext + value
        previous = number
    if message.payload:
        out += b"\xff" + message.payload
    return bytes(out)


def _extended(nibble: int, data: bytes, at: int) -> tuple[int, int]:
    if nibble < 13:
        return nibble, at
    if nibble == 13:
        if at >= len(data):
            raise CoapFormatError("truncated option")
        return data[at] + 13, at + 1
    if nibble == 14:
        if at + 2 > len(data):
            raise CoapFormatError("truncated option")
        return struct.unpack_from(">H", data, at)[0] + 269, at + 2
    raise CoapFormatError("reserved option nibble 15")


def decode(data: bytes) -> CoapMessage:
    """Parse a datagram; CoapFormatError when it is not CoAP."""
    if len(data) < 4 or data[0] >> 6 != 1:
        raise CoapFormatError("not a CoAP version 1 message")
    token_length = data[0] & 0x0F
    if token_length > 8 or len(data) < 4 + token_length:
        raise CoapFormatError("bad token length")
    mtype, code = data[0] >> 4 & 3, data[1]
    (mid,) = struct.unpack_from(">H", data, 2)
    at = 4 + token_length
    token = data[4:at]
    options: list[tuple[int, bytes]] = []
    number = 0
    while at < len(data) and data[at] != 0xFF:
        byte = data[at]
        delta, at = _extended(byte >> 4, data, at + 1)
        length, at = _extended(byte & 0x0F, data, at)
        if at + length > len(data):
            raise CoapFormatError("option runs past the datagram")
        number += delta
        options.append((number, data[at : at + length]))
        at += length
    payload = data[at + 1 :] if at < len(data) else b""
    return CoapMessage(mtype, code, mid, token, tuple(options), payload)


def request(
    code: int,
    path: str,
    *,
    mid: int,
    token: bytes,
    payload: bytes = b"",
    confirmable: bool = True,
    query: Iterable[str] = (),
    extra: Sequence[tuple[int, bytes]] = (),
) -> CoapMessage:
    """A request for `path` (`/m`, `/d/dev-1/x`)."""
    options = [(URI_PATH, part.encode()) for part in path.strip("/").split("/") if part]
    options += [(URI_QUERY, item.encode()) for item in query]
    options += list(extra)
    return CoapMessage(CON if confirmable else NON, code, mid, token, tuple(options), payload)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, client: CoapClient) -> None:
        self.client = client

    def datagram_received(self, data: bytes, addr: tuple[str | bytes, int]) -> None:
        self.client._received(data)


@dataclass
class CoapClient(AsyncLifecycle):
    """A UDP CoAP client: one request at a time per token, many in flight."""

    host: str
    port: int
    timeout_s: float = 5.0
    local_host: str | None = None  # the source address (e.g. another 127.0.0.x in tests)
    _transport: asyncio.DatagramTransport | None = None
    _waiting: dict[bytes, asyncio.Future[CoapMessage]] = field(default_factory=dict)
    _acks: dict[int, asyncio.Future[CoapMessage]] = field(default_factory=dict)
    _mid: int = field(default_factory=lambda: int.from_bytes(os.urandom(2), "big"))

    async def start(self) -> None:
        """Open the socket."""
        loop = asyncio.get_running_loop()
        local = None if self.local_host is None else (self.local_host, 0)
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), remote_addr=(self.host, self.port), local_addr=local
        )

    async def stop(self) -> None:
        """Close the socket; idempotent."""
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()

    def next_mid(self) -> int:
        """A fresh message id."""
        self._mid = (self._mid + 1) & 0xFFFF
        return self._mid

    def send_raw(self, data: bytes) -> None:
        """Send any datagram (for malformed-input tests)."""
        assert self._transport is not None
        self._transport.sendto(data)

    async def send(self, message: CoapMessage, *, timeout_s: float | None = None) -> CoapMessage:
        """Send a request and wait for its response (piggy-backed or separate)."""
        future: asyncio.Future[CoapMessage] = asyncio.get_running_loop().create_future()
        self._waiting[message.token] = future
        try:
            self.send_raw(encode(message))
            return await asyncio.wait_for(future, timeout_s or self.timeout_s)
        finally:
            self._waiting.pop(message.token, None)

    async def send_confirmable(
        self,
        message: CoapMessage,
        *,
        ack_timeout_s: float,
        max_retransmit: int,
        response_timeout_s: float,
    ) -> CoapMessage:
        """Send a confirmable request as RFC 7252 (4.2, 5.2.2) has a client do it: again
        with the same message id after `ack_timeout_s`, doubling, at most `max_retransmit`
        times, until it is acknowledged; once an empty ACK says the response comes
        separately, no more retransmissions, and up to `response_timeout_s` for it.
        Raises TimeoutError when nothing came."""
        loop = asyncio.get_running_loop()
        response: asyncio.Future[CoapMessage] = loop.create_future()
        acked: asyncio.Future[CoapMessage] = loop.create_future()
        self._waiting[message.token] = response
        self._acks[message.mid] = acked
        try:
            wait_s = ack_timeout_s
            for _ in range(max_retransmit + 1):
                self.send_raw(encode(message))
                await asyncio.wait({response, acked}, timeout=wait_s)
                if response.done() or acked.done():
                    break
                wait_s *= 2
            else:
                raise TimeoutError
            return await asyncio.wait_for(response, response_timeout_s)
        finally:
            self._waiting.pop(message.token, None)
            self._acks.pop(message.mid, None)

    async def send_for_ack(
        self, message: CoapMessage, *, timeout_s: float | None = None
    ) -> CoapMessage:
        """Send a confirmable message and return the ACK of its message id: the
        piggy-backed response, or an empty ACK when the response comes (or came) on its
        own. A retransmission of an exchange answered separately gets only the empty ACK."""
        future: asyncio.Future[CoapMessage] = asyncio.get_running_loop().create_future()
        self._acks[message.mid] = future
        try:
            self.send_raw(encode(message))
            return await asyncio.wait_for(future, timeout_s or self.timeout_s)
        finally:
            self._acks.pop(message.mid, None)

    async def call(
        self,
        code: int,
        path: str,
        payload: bytes = b"",
        *,
        confirmable: bool = True,
        query: Iterable[str] = (),
        timeout_s: float | None = None,
    ) -> CoapMessage:
        """Build, send and await one request."""
        message = request(
            code, path, mid=self.next_mid(), token=os.urandom(4), payload=payload,
            confirmable=confirmable, query=query,
        )  # fmt: skip
        return await self.send(message, timeout_s=timeout_s)

    def _received(self, data: bytes) -> None:
        try:
            message = decode(data)
        except CoapFormatError:
            return
        if message.mtype == CON:  # a separate response: acknowledge it
            self.send_raw(encode(CoapMessage(ACK, 0, message.mid)))
        acked = self._acks.get(message.mid) if message.mtype == ACK else None
        if acked is not None and not acked.done():
            acked.set_result(message)
        if message.code == 0:  # an empty ACK: the response comes separately
            return
        future = self._waiting.get(message.token)
        if future is not None and not future.done():
            future.set_result(message)
