"""The CoAP face of the gateway: `/d/{device_id}[/...]`, the routes, `/.well-known/core`.

Bad requests are answered by raising aiocoap's renderable errors; the contact itself is
the pipeline's business. A request with a critical option (odd number) the gateway does
not act on is answered `4.02 Bad Option` before anything else (RFC 7252 5.4.1), one with
Proxy-Uri or Proxy-Scheme `5.05` (the gateway is no proxy). A request with the OSCORE
option (9) is unprotected first (`oscore_layer`): its outer options may be Uri-Host,
Uri-Port and OSCORE only, its inner request is held to the same rules as a plain one,
and the answer is protected. What aiocoap cannot decode never gets here: see
`datagrams`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiocoap
from aiocoap import error
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import CON
from aiocoap.resource import PathCapable, Resource
from preservarium.contract.contact import Contact
from preservarium.errors import RepositoryError
from preservarium.ids import is_device_id

from preservarium_gateway.admission import Admission, NotAuthenticated
from preservarium_gateway.authn import AuthFailure, Presented, split_token
from preservarium_gateway.config import GatewayLimits
from preservarium_gateway.contact import ContactPipeline, Outcome
from preservarium_gateway.directory import DeviceDirectory
from preservarium_gateway.dtls import authenticated_device, dtls_peer
from preservarium_gateway.errors import DirectoryBusyError
from preservarium_gateway.inflight import InFlightLimit, source_host
from preservarium_gateway.metrics import GatewayMetrics
from preservarium_gateway.oscore_layer import OscoreEndpoint

log = logging.getLogger("preservarium.gateway.coap")
NOTHING_PRESENTED = Presented()

SUCCESS = {Code.POST: Code.CREATED, Code.PUT: Code.CHANGED, Code.GET: Code.CONTENT}
DEVICE_METHODS = (Code.POST, Code.PUT)
ROUTE_METHODS = (Code.POST, Code.PUT, Code.GET)
# Critical options the gateway knows: Uri-Host and Uri-Port name this server, Uri-Path and
# Uri-Query are read, Block1 is answered 4.13; Accept and a Block2 size request are
# answered with the whole (at most 1 KiB) body.
KNOWN_CRITICAL = frozenset({3, 7, 11, 15, 17, 23, 27})
PROXY_OPTIONS = frozenset({35, 39})
# Outside an OSCORE message: Uri-Host, Uri-Port, OSCORE itself (the rest is inside).
KNOWN_OUTER_CRITICAL = frozenset({3, 7, 9})
OUTCOMES = {"4.01": "unauthenticated", "4.03": "forbidden", "4.29": "rate_limited"}


class PayloadTooLarge(error.RequestEntityTooLarge):  # type: ignore[misc]
    """4.13 with Size1 saying what fits."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"payload over {limit} bytes")
        self.limit = limit

    def to_message(self) -> aiocoap.Message:
        message = super().to_message()
        message.opt.size1 = self.limit
        return message


class RetryLater(error.ServiceUnavailable):  # type: ignore[misc]
    """5.03 with Max-Age: the device keeps its data and retries."""

    def __init__(self, max_age: int) -> None:
        super().__init__("not stored; retry later")
        self.max_age = max_age

    def to_message(self) -> aiocoap.Message:
        message = super().to_message()
        message.opt.max_age = self.max_age
        return message


def check_options(request: aiocoap.Message, known: frozenset[int] = KNOWN_CRITICAL) -> None:
    """Refuse a request carrying a critical option the gateway would silently ignore."""
    for option in request.opt.option_list():
        number = option.number
        if number & 1 and number not in known:
            if number in PROXY_OPTIONS:
                raise error.ProxyingNotSupported("not a proxy")
            raise error.BadOption(f"unrecognized critical option {int(number)}")


def read_query(request: aiocoap.Message, limits: GatewayLimits) -> dict[str, str]:
    """The Uri-Query as a dict; 4.00 when the sandbox could not take it (its refusal
    would fail the uplink and be charged to the device's pending command)."""
    pairs = (item.partition("=") for item in request.opt.uri_query)
    query = {key: value for key, _, value in pairs}
    if len(query) > limits.query_entries:
        raise error.BadRequest(f"more than {limits.query_entries} query entries")
    chars = limits.text_chars
    if any(len(key) > chars or len(value) > chars for key, value in query.items()):
        raise error.BadRequest(f"a query key or value is over {chars} characters")
    return query


class GatewaySite(Resource, PathCapable):  # type: ignore[misc]
    """The root resource: it parses the path itself."""

    def __init__(
        self,
        *,
        routes: dict[str, str],
        directory: DeviceDirectory,
        pipeline: ContactPipeline,
        admission: Admission,
        limits: GatewayLimits,
        metrics: GatewayMetrics,
        healthy: Callable[[], bool] = lambda: True,
        oscore: OscoreEndpoint | None = None,
    ) -> None:
        super().__init__()
        self._oscore = oscore
        self._healthy = healthy
        self._routes = routes
        self._directory = directory
        self._pipeline = pipeline
        self._admission = admission
        self._limits = limits
        self._metrics = metrics
        self._in_flight_limit = InFlightLimit(
            total=limits.contacts_in_flight, per_host=limits.source_contacts_in_flight
        )
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._draining = False

    async def drain(self, timeout_s: float) -> int:
        """Refuse new contacts (5.03) and wait for those in flight; return how many remain."""
        self._draining = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        return self._in_flight

    async def needs_blockwise_assembly(self, request: aiocoap.Message) -> bool:
        # Payloads are small (1 KiB); a Block1 transfer is answered 4.13 with Size1.
        return False

    async def render(self, request: aiocoap.Message) -> aiocoap.Message:
        """Answer one request; every error is a CoAP code, never an exception."""
        started = time.perf_counter()
        route = "?"
        host = source_host(request)
        if not self._in_flight_limit.admit(host):  # before any work: the answer costs nothing
            busy = RetryLater(self._limits.retry_after_s).to_message()
            self._count("busy", busy, NOTHING_PRESENTED, time.perf_counter() - started)
            return busy
        self._in_flight += 1
        self._idle.clear()
        presented = NOTHING_PRESENTED
        try:
            if request.opt.oscore is not None and self._oscore is not None:
                if self._draining:
                    raise RetryLater(self._limits.retry_after_s)
                route, response, presented = await self._render_protected(self._oscore, request)
            else:
                token, query = split_token(read_query(request, self._limits))
                presented = Presented(authenticated_device(request), token)
                if self._draining:
                    raise RetryLater(self._limits.retry_after_s)
                route, response = await self._render(request, presented, query)
        except error.RenderableError as exc:
            response = exc.to_message()
        finally:
            self._in_flight_limit.release(host)
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()
        self._count(route, response, presented, time.perf_counter() - started)
        return response

    def _count(
        self, route: str, response: aiocoap.Message, presented: Presented, seconds: float
    ) -> None:
        code = str(response.code.dotted)
        outcome = "accepted" if response.code.is_successful() else OUTCOMES.get(code, "refused")
        metrics = self._metrics
        metrics.child(metrics.contacts, route, code, presented.label, outcome).inc()
        metrics.child(metrics.contact_latency, route).observe(seconds)

    async def _render_protected(
        self, oscore: OscoreEndpoint, request: aiocoap.Message
    ) -> tuple[str, aiocoap.Message, Presented]:
        """An OSCORE request: refusals before unprotection go out in clear (RFC 8613
        8.2), everything the inner request gets is protected."""
        check_options(request, KNOWN_OUTER_CRITICAL)
        remote = _remote(request)
        self._admission.admit_source(remote)  # before any lookup or decryption
        unprotected = await oscore.unprotect(request, remote)
        inner = unprotected.request
        presented, route = Presented(oscore_device=unprotected.device_id), "?"
        try:
            token, query = split_token(read_query(inner, self._limits))
            presented = Presented(token=token, oscore_device=unprotected.device_id)
            route, response = await self._render(inner, presented, query, source_admitted=True)
        except error.RenderableError as exc:
            response = exc.to_message()
        return route, oscore.protect(unprotected, response), presented

    async def _render(
        self,
        request: aiocoap.Message,
        presented: Presented,
        query: dict[str, str],
        *,
        source_admitted: bool = False,
    ) -> tuple[str, aiocoap.Message]:
        check_options(request)
        path = request.opt.uri_path
        if path == (".well-known", "core"):
            return "well-known", self._well_known(request)
        at = _At(_remote(request), presented, query, source_admitted)
        if len(path) >= 2 and path[0] == "d":
            return "d", await self._device(request, path[1], "/".join(path[2:]), at)
        if len(path) == 1 and path[0] in self._routes:
            return path[0], await self._route(request, path[0], at)
        raise error.NotFound("no such resource")

    def _well_known(self, request: aiocoap.Message) -> aiocoap.Message:
        if request.code != Code.GET:
            raise error.MethodNotAllowed()
        if not self._healthy():  # the health probe asks here: a background task is down
            raise RetryLater(self._limits.retry_after_s)
        links = ['</d>;rt="preservarium.device"'] + [
            f'</{route}>;rt="preservarium.{device_type}"'
            for route, device_type in sorted(self._routes.items())
        ]
        message = aiocoap.Message(code=Code.CONTENT, payload=",".join(links).encode())
        message.opt.content_format = 40
        return message

    def _check(self, request: aiocoap.Message, methods: tuple[Code, ...]) -> None:
        if request.code not in methods:
            raise error.MethodNotAllowed()
        if request.opt.block1 is not None or len(request.payload) > self._limits.payload_bytes:
            raise PayloadTooLarge(self._limits.payload_bytes)

    async def _device(
        self, request: aiocoap.Message, device_id: str, subpath: str, at: _At
    ) -> aiocoap.Message:
        if not is_device_id(device_id):
            raise error.BadRequest("malformed device id")
        if len(subpath) > self._limits.text_chars:
            raise error.BadRequest(f"path over {self._limits.text_chars} characters")
        self._check(request, DEVICE_METHODS)
        self._admit_source(at)
        try:
            device_type = await self._directory.device_type(device_id)
        except DirectoryBusyError as exc:  # a flood of made-up ids: not worth a log line each
            raise RetryLater(self._limits.retry_after_s) from exc
        except RepositoryError as exc:
            log.warning("device lookup failed", extra={"device_id": device_id, "error": str(exc)})
            raise RetryLater(self._limits.retry_after_s) from exc
        if device_type is None:
            raise error.NotFound("unknown device")
        verdict = self._admission.authenticate(device_id, at.presented, at.remote)
        if verdict.failure is not None:
            raise NotAuthenticated(verdict.failure)
        self._admission.admit_device(device_id)
        return await self._contact(request, device_id, device_type, subpath, at)

    async def _route(self, request: aiocoap.Message, route: str, at: _At) -> aiocoap.Message:
        self._check(request, ROUTE_METHODS)
        # No refusal before the parse: the parser's token() may find a credential in the
        # payload. The source's failure budget bounds what refused contacts cost.
        self._admit_source(at)
        return await self._contact(request, None, self._routes[route], route, at)

    def _admit_source(self, at: _At) -> None:
        if not at.source_admitted:
            self._admission.admit_source(at.remote)

    async def _contact(
        self,
        request: aiocoap.Message,
        device_id: str | None,
        device_type: str,
        path: str,
        at: _At,
    ) -> aiocoap.Message:
        contact = Contact(
            id=uuid.uuid4().hex,
            received_at=datetime.now(UTC),
            device_id=device_id,
            device_type=device_type,
            path=path,
            method=str(request.code),
            confirmable=request.mtype is CON,
            remote=at.remote,
            payload=bytes(request.payload),
            query=at.query,
        )
        answer = await self._pipeline.handle(contact, at.presented)
        if answer.outcome is Outcome.RETRY_LATER:
            raise RetryLater(self._limits.retry_after_s)
        if answer.outcome is Outcome.FORBIDDEN:
            raise error.Forbidden("not this device")
        if answer.outcome is Outcome.UNAUTHENTICATED:
            raise NotAuthenticated(AuthFailure.MISSING)
        return aiocoap.Message(code=SUCCESS[request.code], payload=answer.body)


@dataclass(frozen=True, slots=True)
class _At:
    """Who sent a contact and what it presented, read once per request."""

    remote: str
    presented: Presented
    query: dict[str, str]  # without the token
    source_admitted: bool = False  # the source's rates were checked already (OSCORE)


def _remote(request: Any) -> str:
    """`ip:port` of the sender (aiocoap's own `hostinfo` parses the address: costly)."""
    remote = request.remote
    try:
        host, port = (getattr(remote, "sockaddr", None) or dtls_peer(remote))[:2]
    except (AttributeError, ValueError, TypeError):
        return "?"
    host = host.removeprefix("::ffff:")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
