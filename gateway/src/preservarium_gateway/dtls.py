"""The DTLS-PSK listener: an aiocoap server context on tinydtls, bound exactly where asked.

aiocoap's `tinydtls_server` transport, left alone, listens on the given port plus one
(it offsets from 5683 to 5684), refuses the any-address, shares its port with any
other socket that sets SO_REUSEPORT, and never evicts idle sessions. This module keeps
its DTLS and CoAP machinery and replaces those four: the socket is bound to exactly
`bind`, the any-address is allowed (replies leave by the kernel's route, so on a host
with several addresses bind the one devices use), the port is not shared, and at most
`max_sessions` peers are kept (the least recently heard is dropped, and re-handshakes).
It also holds a client's ClientKeyExchange until the keyring has fetched the key of
the identity in it, so each handshake meets the device's current key.

The private aiocoap names used here are pinned by the `aiocoap<0.5` requirement and
covered by tests/gateway/test_dtls.py, which talks to the listener with libcoap.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiocoap
from aiocoap.numbers import COAP_PORT
from aiocoap.transports import tinydtls_server
from aiocoap.util import hostportjoin
from preservarium.lifecycle import AsyncLifecycle
from preservarium.settings import HostPort

from preservarium_gateway.dtls_records import client_key_exchange_identity
from preservarium_gateway.errors import GatewayStartError
from preservarium_gateway.psk_keyring import PskClaim, PskKeyring

DEFAULT_MAX_SESSIONS = 4096
MAX_HELD_DATAGRAMS = 16


def authenticated_device(request: aiocoap.Message) -> str | None:
    """The device a request's DTLS session authenticated as, or None (no DTLS session)."""
    remote = request.remote
    claims = getattr(remote, "authenticated_claims", None) or []
    for claim in claims:
        if isinstance(claim, PskClaim):
            return claim.device_id
    return None


def dtls_peer(remote: Any) -> Any:
    """The UDP socket address behind a DTLS endpoint, or None for any other endpoint."""
    underlying = getattr(remote, "_underlying_address", None)
    return getattr(underlying, "address", None)


class _ExactServerSocket(tinydtls_server._DatagramServerSocketSimpleDTLS):  # type: ignore[misc]
    """The DTLS server socket, bound as given; evicts the least recently heard peer."""

    max_sockets = DEFAULT_MAX_SESSIONS

    @classmethod
    async def create(cls, bind: Any, log: Any, loop: Any, message_interface: Any) -> Any:
        wrapped = tinydtls_server.GoingThroughMessageDecryption(message_interface)
        ready = loop.create_future()
        family = socket.AF_INET6 if ":" in bind[0] else socket.AF_INET
        transport, _ = await loop.create_datagram_endpoint(
            lambda: cls(ready.set_result, wrapped, log),
            local_addr=bind,
            family=family,
            reuse_port=False,  # a second process must not silently share our port
        )
        self = await ready
        self._loop = loop
        self._start_holding()
        self.sockname = transport.get_extra_info("sockname")
        self.hostinfo_local = hostportjoin(bind[0], self.sockname[1])
        return self

    def _start_holding(self) -> None:
        # Datagrams held per peer while its key is fetched, and the fetches themselves.
        self._held: dict[Any, list[bytes]] = {}
        self._fetches: set[asyncio.Task[None]] = set()
        self._closed = False

    def datagram_received(self, data: bytes, sockaddr: Any) -> None:
        held = self._held.get(sockaddr)
        if held is not None:  # a fetch for this peer is running: keep its order
            if len(held) < MAX_HELD_DATAGRAMS:  # beyond that, DTLS retransmits
                held.append(data)
            return
        identity = client_key_exchange_identity(data)
        keyring: PskKeyring = self._server_credentials
        if (
            identity is not None
            and len(self._held) < self.max_sockets
            and keyring.should_fetch(identity)
        ):
            self._held[sockaddr] = [data]
            task = self._loop.create_task(self._fetch_then_deliver(keyring, identity, sockaddr))
            self._fetches.add(task)
            task.add_done_callback(self._fetches.discard)
            return
        self._deliver(data, sockaddr)

    async def _fetch_then_deliver(
        self, keyring: PskKeyring, identity: bytes, sockaddr: Any
    ) -> None:
        try:
            await keyring.fetch(identity)
        finally:
            for data in self._held.pop(sockaddr, []):
                self._deliver(data, sockaddr)

    def _deliver(self, data: bytes, sockaddr: Any) -> None:
        if self._closed:
            return
        if sockaddr not in self._connections:
            self._maybe_purge_sockets()
        super().datagram_received(data, sockaddr)

    async def shutdown(self) -> None:
        self._closed = True
        for task in list(self._fetches):
            task.cancel()
        await asyncio.gather(*self._fetches, return_exceptions=True)
        await super().shutdown()


class _ExactBindTransport(tinydtls_server.MessageInterfaceTinyDTLSServer):  # type: ignore[misc]
    """aiocoap adds (default port - 5683) to the bind port; with this default it adds 0."""

    _default_port = COAP_PORT
    _serversocket = _ExactServerSocket


class DtlsPskListener(AsyncLifecycle):
    """CoAP over DTLS 1.2 with pre-shared keys: the PSK identity names the device.

    `site` is an aiocoap site, as for the plain listener; its handlers learn who is
    speaking with `authenticated_device(request)`.
    """

    def __init__(
        self,
        *,
        site: Any,
        bind: HostPort,
        keyring: PskKeyring,
        context_class: type[aiocoap.Context] = aiocoap.Context,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
    ) -> None:
        self._site = site
        self._bind = bind
        self._keyring = keyring
        self._context_class = context_class
        self._max_sessions = max_sessions
        self._context: Any = None
        self._transport: Any = None

    @property
    def port(self) -> int:
        """The UDP port listened on (the bound one when `bind` asked for port 0)."""
        if self._transport is None:
            raise RuntimeError("the DTLS listener is not started")
        return int(self._transport._pool.sockname[1])

    @property
    def context(self) -> Any:
        """The aiocoap server context (None until started)."""
        return self._context

    @property
    def session_count(self) -> int:
        """Peers with DTLS state held now (at most `max_sessions`)."""
        return 0 if self._transport is None else len(self._transport._pool._connections)

    async def start(self) -> None:
        """Load the keys, then open the DTLS port; GatewayStartError if it is taken."""
        await self._keyring.start()
        loop = asyncio.get_running_loop()
        context = self._context_class(
            loop=loop, serversite=self._site, loggername="coaps-server",
            server_credentials=self._keyring,
        )  # fmt: skip
        try:
            await context._append_tokenmanaged_messagemanaged_transport(self._open)
        except OSError as exc:
            # No transport was added, so the context holds nothing to shut down.
            await self._keyring.stop()
            raise GatewayStartError(
                f"cannot listen on {self._bind} (udp, dtls): {exc.strerror}"
            ) from exc
        self._context = context

    async def stop(self) -> None:
        """Close the sessions and the port, stop the keyring; idempotent."""
        context, self._context, self._transport = self._context, None, None
        if context is not None:
            await context.shutdown()
        await self._keyring.stop()

    async def _open(self, message_manager: Any) -> Any:
        transport = await _ExactBindTransport.create_server(
            (self._bind.host, self._bind.port),
            message_manager,
            log=message_manager.log,
            loop=asyncio.get_running_loop(),
            server_credentials=self._keyring,
        )
        transport._pool.max_sockets = self._max_sessions
        self._transport = transport
        return transport
