"""One device contact, stage by stage: raw to Kafka, parse, identity, parsed or failed,
command, answer.

The raw record and the sandbox call run at the same time (the parse does not need the
ack); the device gets its success code only once the raw record is acknowledged. A
route contact's identity is checked (`identity`, then `authn`) before anything is
delivered. A `/d/{id}` contact arrives here already authenticated (the CoAP layer checks
it before any stage). A route contact in `required` mode is parsed first and its raw
record written only once `identify()` (and the optional `token()`, for a credential in
the payload) has named a device it authenticated as: a contact that does not
authenticate produces no uplink record at all (the cost: the raw publish waits for the
parse on that path). In `optional` mode a route contact takes the same path as soon as
any device has credentials; until then nothing on a route can be refused for its
credentials, and the raw record is written while the parse runs.

Parsers see the device's attributes (`metadata["attributes"]`) from the directory's
in-memory copy, never from a query. On a route the device is not known before identify()
names it, so identify() (and the parse() of the same call) sees {}: when the device it
named has attributes, parse() and reply() run again for that device, with them (one more
sandbox call, only for route devices that have attributes), also when the first parse()
failed (the sandbox's error says which device identify() had named).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace
from enum import Enum

from preservarium.contract import uplinks
from preservarium.contract.contact import Contact
from preservarium.contract.encoding import encode
from preservarium.contract.kinds import ErrorKind
from preservarium.contract.topics import Topics
from preservarium.repositories import CommandRecord
from preservarium.sandbox_answers import ParseAnswer
from preservarium.sandbox_client import SandboxRequestError, SandboxUnavailableError
from preservarium.settings import DeviceAuthMode

from preservarium_gateway.admission import Admission
from preservarium_gateway.authn import AuthFailure, Presented
from preservarium_gateway.commands import CommandDesk
from preservarium_gateway.config import GatewayLimits
from preservarium_gateway.directory import DeviceDirectory
from preservarium_gateway.errors import PublishError
from preservarium_gateway.identity import Identity, RouteIdentities
from preservarium_gateway.last_seen import LastSeenRecorder
from preservarium_gateway.metrics import GatewayMetrics
from preservarium_gateway.types import ParserService, UplinkPublisher

log = logging.getLogger("preservarium.gateway.contact")
NOTHING = Presented()


class Outcome(Enum):
    """How a contact ended, for the CoAP layer to pick its code."""

    ACCEPTED = "accepted"
    RETRY_LATER = "retry_later"
    FORBIDDEN = "forbidden"
    UNAUTHENTICATED = "unauthenticated"


@dataclass(frozen=True, slots=True)
class ContactAnswer:
    """What goes back to the device."""

    outcome: Outcome
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Parsed:
    """The sandbox's answer, or why there is none."""

    response: ParseAnswer | None
    unavailable: str | None = None
    # The attributes the parser was given (compact JSON, "" for {}).
    attributes_json: str = ""

    @property
    def ok(self) -> bool:
        """True when the parser produced data."""
        return self.response is not None and self.response.ok


class ContactPipeline:
    """Runs the stages of a contact; holds no state of its own between contacts."""

    def __init__(
        self,
        *,
        publisher: UplinkPublisher,
        sandbox: ParserService,
        desk: CommandDesk,
        directory: DeviceDirectory,
        topics: Topics,
        limits: GatewayLimits,
        metrics: GatewayMetrics,
        admission: Admission,
        last_seen: LastSeenRecorder,
    ) -> None:
        self._publisher = publisher
        self._last_seen = last_seen
        self._admission = admission
        self._authenticate_first = admission.authenticator.mode is DeviceAuthMode.REQUIRED
        self._sandbox = sandbox
        self._desk = desk
        self._directory = directory
        self._identities = RouteIdentities(directory=directory, pending=desk.index)
        self._topics = topics
        self._limits = limits
        self._metrics = metrics

    async def handle(self, contact: Contact, presented: Presented = NOTHING) -> ContactAnswer:
        """Every stage of one contact (stamped with its id and time by the CoAP layer);
        `presented` is what it showed to prove who it is."""
        if contact.device_id is None and (
            self._authenticate_first or self._directory.any_credentials
        ):
            return await self._handle_route_authenticated_first(contact, presented)
        command = (
            await self._desk.claim_for_contact(contact.device_id) if contact.confirmable else None
        )
        durable, parsed = await asyncio.gather(
            self._publish_raw(contact), self._parse(contact, command)
        )
        parsed = await self._parse_after_failure(contact, parsed)
        if not durable:
            if command is not None:
                await self._desk.release_after_contact(command)
            return ContactAnswer(Outcome.RETRY_LATER)
        identity = await self._identity(contact, parsed, presented)
        if self._authenticate(contact, presented, identity, parsed) is not None:
            # Optional mode with no device holding credentials (as far as the directory
            # knew a moment ago): only a mismatch of proofs gets here; the raw record
            # (device_id null) names nobody.
            return ContactAnswer(Outcome.UNAUTHENTICATED)
        return await self._finish(contact, parsed, identity, command)

    async def _handle_route_authenticated_first(
        self, contact: Contact, presented: Presented
    ) -> ContactAnswer:
        """A route contact that may have to authenticate: identify and authenticate, then
        record, so that a refused contact leaves no uplink record at all."""
        parsed = await self._parse_after_failure(contact, await self._parse(contact, None))
        if parsed.response is None:
            if self._authenticate_first:  # who it is cannot be told now: the device retries
                return ContactAnswer(Outcome.RETRY_LATER)
            # Optional: as for any contact while the sandbox is away, its data is kept.
            if not await self._publish_raw(contact):
                return ContactAnswer(Outcome.RETRY_LATER)
            return await self._finish(contact, parsed, Identity(None), None)
        identity = await self._identity(contact, parsed, presented)
        if self._authenticate(contact, presented, identity, parsed) is not None:
            return ContactAnswer(Outcome.UNAUTHENTICATED)
        forbidden = identity.refusal is not None and identity.refusal.forbidden
        if not forbidden and not await self._publish_raw(contact):
            return ContactAnswer(Outcome.RETRY_LATER)
        return await self._finish(contact, parsed, identity, None)

    def _authenticate(
        self, contact: Contact, presented: Presented, identity: Identity, parsed: Parsed
    ) -> AuthFailure | None:
        """Why a route contact is not taken as the device identify() named (None: it is).

        Authentication comes first: a contact that does not prove it is the device named
        is refused 4.01 whatever else is wrong. A DTLS session or OSCORE context that
        proved another device did authenticate; that is a mismatch (4.03,
        `device_mismatch`, decided by RouteIdentities).
        """
        if contact.device_id is not None:
            return None
        device_id, refusal = identity.device_id, identity.refusal
        if refusal is not None and refusal.proven_other:
            return None
        if device_id is None or (refusal is not None and not refusal.forbidden):
            if not self._authenticate_first:
                return None  # optional: the parser's failure is recorded as usual
            failure = AuthFailure.MISSING
        else:
            shown = _with_payload_token(presented, parsed)
            verdict = self._admission.authenticate(device_id, shown, contact.remote)
            if verdict.failure is None and refusal is None:
                self._admission.admit_device(device_id)
            return verdict.failure
        self._admission.failed(failure, contact.remote)
        return failure

    async def _finish(
        self,
        contact: Contact,
        parsed: Parsed,
        identity: Identity,
        command: CommandRecord | None,
    ) -> ContactAnswer:
        """Publish what the contact produced, and answer it (with a command, if one waits)."""
        device_id, refusal = identity.device_id, identity.refusal
        if refusal is not None:
            if command is not None:
                await self._desk.release_after_contact(command)
            self._publish_failure(contact, device_id, refusal.kind, refusal.message, None)
            return ContactAnswer(Outcome.FORBIDDEN if refusal.forbidden else Outcome.ACCEPTED)
        if contact.device_id is None and device_id is not None:
            parsed = await self._parse_as_named(contact, device_id, parsed)
        self._publish_result(contact, device_id, parsed)
        # Delivered as this device: its last-seen time moves. Only registered devices
        # have one (a route may name devices the registry does not know).
        if device_id is not None and self._directory.known_type(device_id) is not None:
            self._last_seen.seen(device_id)
        body = b""
        if parsed.ok and parsed.response is not None and parsed.response.reply is not None:
            body = parsed.response.reply
        if contact.confirmable and identity.verified:
            sent = await self._command(contact, device_id, command, parsed)
            if sent is not None:
                body = sent
        return ContactAnswer(Outcome.ACCEPTED, body)

    async def _publish_raw(self, contact: Contact) -> bool:
        key = contact.device_id.encode() if contact.device_id else None
        try:
            value = encode(uplinks.raw_record(contact))
            await self._publisher.publish(self._topics.raw, value, key)
        except PublishError as exc:
            log.warning("raw uplink not durable", extra={"uplink_id": contact.id,
                        "device_id": contact.device_id, "error": str(exc)})  # fmt: skip
            return False
        return True

    async def _parse_as_named(self, contact: Contact, device_id: str, parsed: Parsed) -> Parsed:
        """A route contact's answer for the device identify() named: parsed again with its
        attributes when it has some (the first call could not know them)."""
        attributes = self._directory.attributes_json(device_id)
        if parsed.response is None or parsed.attributes_json == attributes:
            return parsed
        self._metrics.route_reparses.inc()
        return await self._parse(contact, None, device_id=device_id)

    async def _parse_after_failure(self, contact: Contact, parsed: Parsed) -> Parsed:
        """A route contact whose parse() (or reply()) failed after identify() named a device
        that has attributes: parsed again as that device, with them, since the failure may
        come from their absence. The token token() found still counts."""
        response = parsed.response
        if contact.device_id is not None or response is None or response.ok:
            return parsed
        device_id = response.identified_device_id
        if device_id is None or not self._directory.attributes_json(device_id):
            return parsed
        self._metrics.route_reparses.inc()
        again = await self._parse(contact, None, device_id=device_id)
        token = response.identified_token
        if again.ok and again.response is not None and token is not None:
            return replace(again, response=again.response._replace(token=token))
        return again

    async def _parse(
        self,
        contact: Contact,
        command: CommandRecord | None,
        *,
        device_id: str | None = None,
    ) -> Parsed:
        """The sandbox's answer for the contact; `device_id` parses a route contact as that
        device (identify() already named it), else the contact's own id is used."""
        named = device_id or contact.device_id
        attributes = self._directory.attributes_json(named)
        asked = contact
        if named != contact.device_id or attributes:
            asked = replace(contact, device_id=named, attributes_json=attributes)
        started = time.perf_counter()
        try:
            response = await self._sandbox.parse(
                asked,
                identify=named is None,
                command=None if command is None else self._desk.command_input(command),
                timeout_s=self._limits.sandbox_timeout_s,
            )
        except (SandboxUnavailableError, SandboxRequestError) as exc:
            return Parsed(None, unavailable=str(exc), attributes_json=attributes)
        finally:
            self._metrics.child(self._metrics.sandbox_latency, "Parse").observe(
                time.perf_counter() - started
            )
        return Parsed(response, attributes_json=attributes)

    async def _identity(self, contact: Contact, parsed: Parsed, presented: Presented) -> Identity:
        """The device id as now known, or why the contact must not be delivered."""
        if contact.device_id is not None:  # a path id: checked, and registered with its type
            return Identity(contact.device_id)
        response = parsed.response
        if response is None or response.device_id is None:
            return Identity(None)
        return await self._identities.check(
            response.device_id, route=contact.path, device_type=contact.device_type,
            proven=presented.proven_device,
        )  # fmt: skip

    def _publish_result(self, contact: Contact, device_id: str | None, parsed: Parsed) -> None:
        """Publish uplink.parsed or uplink.failed."""
        response = parsed.response
        if response is None:
            unavailable = parsed.unavailable or ""
            self._publish_failure(
                contact, device_id, ErrorKind.SANDBOX_UNAVAILABLE, unavailable, None
            )
            return
        error = response.error
        if error is not None:
            self._publish_failure(
                contact, device_id, error.kind, error.message, error.line, response.printed
            )
            return
        value = uplinks.parsed_record(
            contact,
            device_id=device_id,
            parser=response.parser.as_record(),
            data_json=response.data_json,
            warnings=list(response.warnings),
            printed=response.printed,
        )
        self._send(self._topics.parsed, value, device_id)

    def _publish_failure(
        self,
        contact: Contact,
        device_id: str | None,
        kind: str,
        message: str,
        line: int | None,
        printed: str = "",
    ) -> None:
        self._metrics.parse_errors.labels(kind).inc()
        log.info("uplink failed", extra={"uplink_id": contact.id, "device_id": device_id,
                 "kind": kind})  # fmt: skip
        failed = uplinks.failed_record(
            contact, device_id=device_id, kind=kind, message=message, line=line, printed=printed
        )
        self._send(self._topics.failed, encode(failed), device_id)

    def _send(self, topic: str, value: bytes, device_id: str | None) -> None:
        self._publisher.publish_later(topic, value, device_id.encode() if device_id else None)

    async def _command(
        self,
        contact: Contact,
        device_id: str | None,
        command: CommandRecord | None,
        parsed: Parsed,
    ) -> bytes | None:
        """The command bytes for this CON response, if a command is pending and formats."""
        if parsed.response is None:  # the sandbox is away: keep the command for later
            if command is not None:
                await self._desk.retry_after_contact(command, parsed.unavailable or "no answer")
            return None
        formatted = None if command is None else parsed.response.command
        if command is None and contact.device_id is None and device_id is not None:
            command = await self._desk.claim_for_contact(device_id)  # a route device, known now
        if command is None:
            return None
        return await self._desk.deliver(
            command, device_type=contact.device_type, formatted=formatted
        )


def _with_payload_token(presented: Presented, parsed: Parsed) -> Presented:
    """What a route contact presented, with the token its parser's token() found (a token
    in the Uri-Query comes first)."""
    response = parsed.response
    if presented.token is not None or response is None or response.token is None:
        return presented
    return Presented(presented.dtls_device, response.token, presented.oscore_device)
