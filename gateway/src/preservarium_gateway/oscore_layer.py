"""OSCORE (RFC 8613) on the plain CoAP port: unprotect a device's request, protect the answer.

A request carrying the OSCORE option is taken apart here before the contact path sees
it, in this order (each refusal is unprotected, counted in
`preservarium_gateway_oscore_refused_total{cause}`, and the ones that are failed
authentications are charged to the source like any other):

1. the outer code must be POST or FETCH (`method`, 4.05); the option must decode
   (`malformed`, 4.02);
2. the kid names a device's context (`unknown_kid`, 4.01);
3. the message decrypts with it (`decrypt_failed`, 4.01: RFC 8613 says 4.00, but a
   device that cannot prove who it is gets 4.01 everywhere on this gateway), and its
   sequence number is not in the replay window this gateway knows (`replay`, 4.01);
4. the number is struck out in the database (`ReplayWindowStore.advance`, a
   compare-and-set), which every gateway shares: of two copies of a message, at one
   gateway or at two, exactly one gets past this point (`replay`, 4.01, for the other).
   This happens before anything of the contact does, so a message is acted on at most
   once, at the price of one database write per contact (5.03 when the database does
   not answer: the device retries with a new sequence number).

The inner request then takes the normal path as a contact that authenticated as the
context's device; whatever it answers (a command, a refusal) is protected with the
request's nonce.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import aiocoap
from aiocoap import error, oscore
from aiocoap.numbers.codes import Code
from preservarium.errors import NotFoundError, PreservariumError

from preservarium_gateway.admission import Admission
from preservarium_gateway.authn import AuthFailure
from preservarium_gateway.errors import DirectoryBusyError
from preservarium_gateway.metrics import GatewayMetrics
from preservarium_gateway.oscore_contexts import DeviceSecurityContext, OscoreContexts

log = logging.getLogger("preservarium.gateway.oscore")
OUTER_METHODS = (Code.POST, Code.FETCH)
# Causes that are failed authentications, and their reason in auth_failures_total.
AUTH_FAILURES = {
    "unknown_kid": AuthFailure.OSCORE_UNKNOWN_KID,
    "decrypt_failed": AuthFailure.OSCORE_DECRYPT_FAILED,
    "replay": AuthFailure.OSCORE_REPLAY,
}
CODES = {
    "method": Code.METHOD_NOT_ALLOWED,
    "malformed": Code.BAD_OPTION,
    "unknown_kid": Code.UNAUTHORIZED,
    "decrypt_failed": Code.UNAUTHORIZED,
    "replay": Code.UNAUTHORIZED,
    "unavailable": Code.SERVICE_UNAVAILABLE,
}


class OscoreRefused(error.RenderableError):  # type: ignore[misc]
    """An OSCORE request refused before it was unprotected: an unprotected answer."""

    def __init__(self, cause: str, max_age: int = 0) -> None:
        super().__init__(f"OSCORE: {cause}")
        self.cause = cause
        self.max_age = max_age

    def to_message(self) -> aiocoap.Message:
        # Max-Age 0 (RFC 8613 8.2): the refusal must not be served from a cache later.
        return aiocoap.Message(code=CODES[self.cause], max_age=self.max_age)


@dataclass(frozen=True, slots=True)
class Unprotected:
    """A request as its device sent it, and what its response is protected with."""

    request: aiocoap.Message
    context: DeviceSecurityContext
    request_id: Any  # aiocoap's RequestIdentifiers: the request's kid and partial IV

    @property
    def device_id(self) -> str:
        """The device the request authenticated as."""
        return self.context.device_id


class OscoreEndpoint:
    """Unprotects requests with the devices' contexts and protects their responses."""

    def __init__(
        self,
        *,
        contexts: OscoreContexts,
        admission: Admission,
        metrics: GatewayMetrics,
        retry_after_s: int,
    ) -> None:
        self.contexts = contexts
        self._admission = admission
        self._metrics = metrics
        self._retry_after_s = retry_after_s

    async def unprotect(self, request: aiocoap.Message, remote: str) -> Unprotected:
        """The inner request, its sequence number struck out; OscoreRefused if not."""
        if request.code not in OUTER_METHODS:
            raise self._refused("method", remote)
        try:
            fields = oscore.verify_start(request)
        except (oscore.DecodeError, IndexError):
            raise self._refused("malformed", remote) from None
        kid = fields.get(oscore.COSE_KID)
        if not isinstance(kid, bytes) or oscore.COSE_KID_CONTEXT in fields:
            raise self._refused("unknown_kid", remote)
        context = await self._context(kid, remote)
        inner, request_id = self._decrypt(context, request, remote)
        await self._strike_out(context, request_id, remote)
        inner.remote, inner.mtype = request.remote, request.mtype
        inner.mid, inner.token = request.mid, request.token
        return Unprotected(inner, context, request_id)

    def protect(self, unprotected: Unprotected, response: aiocoap.Message) -> aiocoap.Message:
        """The response, protected with the request's nonce (no sequence number spent)."""
        protected, _ = unprotected.context.protect(response, unprotected.request_id)
        result: aiocoap.Message = protected
        return result

    async def _context(self, kid: bytes, remote: str) -> DeviceSecurityContext:
        try:
            context = await self.contexts.get(kid)
        except DirectoryBusyError as exc:  # the lookup budget is spent: not worth a log line
            raise self._refused("unavailable", remote) from exc
        except PreservariumError as exc:  # the database, or a secret that does not open
            log.warning("OSCORE context not read", extra={"kid": kid.hex(), "error": str(exc)})
            raise self._refused("unavailable", remote) from exc
        if context is None:
            raise self._refused("unknown_kid", remote)
        return context

    def _decrypt(
        self, context: DeviceSecurityContext, request: aiocoap.Message, remote: str
    ) -> tuple[aiocoap.Message, Any]:
        try:
            inner, request_id = context.unprotect(request)
        except oscore.ReplayError:
            raise self._refused("replay", remote) from None
        except oscore.DecodeError:
            raise self._refused("malformed", remote) from None
        except oscore.ProtectionInvalid:
            raise self._refused("decrypt_failed", remote) from None
        except (error.Error, ValueError, UnicodeDecodeError):  # inner options do not decode
            raise self._refused("malformed", remote) from None
        return inner, request_id

    async def _strike_out(
        self, context: DeviceSecurityContext, request_id: Any, remote: str
    ) -> None:
        seq = int.from_bytes(request_id.partial_iv, "big")
        window = context.window
        try:
            fresh, window.state = await self.contexts.windows.advance(
                context.kid, seq, window.state
            )
        except NotFoundError:  # rotated or removed since the context was read
            self.contexts.drop(context.kid)
            raise self._refused("unknown_kid", remote) from None
        except PreservariumError as exc:
            log.warning("OSCORE replay window not stored", extra={
                "device_id": context.device_id, "error": str(exc)})  # fmt: skip
            raise self._refused("unavailable", remote) from exc
        if not fresh:
            raise self._refused("replay", remote)

    def _refused(self, cause: str, remote: str) -> OscoreRefused:
        self._metrics.child(self._metrics.oscore_refused, cause).inc()
        failure = AUTH_FAILURES.get(cause)
        if failure is not None:
            self._admission.failed(failure, remote)
        max_age = self._retry_after_s if cause == "unavailable" else 0
        return OscoreRefused(cause, max_age)
