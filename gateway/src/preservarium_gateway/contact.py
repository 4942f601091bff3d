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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum

from preservarium.errors import RepositoryError
from preservarium.repositories import CommandRecord
from preservarium.sandbox.v1 import sandbox_pb2 as pb
from preservarium.sandbox_client import (
    CommandInput,
    ContactInput,
    SandboxRequestError,
    SandboxUnavailableError,
    error_kind_name,
)
from preservarium.settings import DeviceAuthMode

from preservarium_gateway import records
from preservarium_gateway.admission import Admission
from preservarium_gateway.authn import AuthFailure, Presented
from preservarium_gateway.commands import CommandDesk, command_params
from preservarium_gateway.config import GatewayLimits, Topics
from preservarium_gateway.directory import DeviceDirectory
from preservarium_gateway.errors import PublishError
from preservarium_gateway.identity import Identity, RouteIdentities
from preservarium_gateway.kafka import KafkaPublisher
from preservarium_gateway.last_seen import LastSeenRecorder
from preservarium_gateway.metrics import GatewayMetrics
from preservarium_gateway.types import ParserService

log = logging.getLogger("preservarium.gateway.contact")


class Outcome(Enum):
    """How a contact ended, for the CoAP layer to pick its code."""

    ACCEPTED = "accepted"
    RETRY_LATER = "retry_later"
    FORBIDDEN = "forbidden"
    UNAUTHENTICATED = "unauthenticated"


@dataclass(frozen=True, slots=True)
class ContactRequest:
    """A device contact that passed the CoAP checks."""

    device_id: str | None
    device_type: str
    path: str
    method: str
    confirmable: bool
    remote: str
    payload: bytes
    query: dict[str, str]
    presented: Presented = field(default_factory=Presented)


@dataclass(frozen=True, slots=True)
class ContactAnswer:
    """What goes back to the device."""

    outcome: Outcome
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Parsed:
    """The sandbox's answer, or why there is none."""

    response: pb.ParseResponse | None
    unavailable: str | None = None
    # The attributes the parser was given (compact JSON, "" for {}).
    attributes_json: str = ""

    @property
    def ok(self) -> bool:
        """True when the parser produced data."""
        return self.response is not None and self.response.HasField("result")


class ContactPipeline:
    """Runs the stages of a contact; holds no state of its own between contacts."""

    def __init__(
        self,
        *,
        publisher: KafkaPublisher,
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

    async def handle(self, request: ContactRequest) -> ContactAnswer:
        """Every stage of one contact."""
        now = datetime.now(UTC)
        uplink = records.Uplink(
            id=records.uplink_id(), received_at=now, device_id=request.device_id,
            device_type=request.device_type, method=request.method, path=request.path,
            confirmable=request.confirmable, remote=request.remote, payload=request.payload,
            query=request.query,
        )  # fmt: skip
        if request.device_id is None and (
            self._authenticate_first or self._directory.any_credentials
        ):
            return await self._handle_route_authenticated_first(request, uplink)
        command = await self._claim(request.device_id) if request.confirmable else None
        durable, parsed = await self._publish_raw_while_parsing(uplink, command)
        parsed = await self._parse_after_failure(uplink, parsed)
        if not durable:
            if command is not None:
                await self._release(command)
            return ContactAnswer(Outcome.RETRY_LATER)
        identity = await self._identity(uplink, parsed, request.presented)
        if self._authenticate(request, identity, parsed) is not None:
            # Optional mode with no device holding credentials (as far as the directory
            # knew a moment ago): only a mismatch of proofs gets here; the raw record
            # (device_id null) names nobody.
            return ContactAnswer(Outcome.UNAUTHENTICATED)
        return await self._finish(request, uplink, parsed, identity, command)

    async def _publish_raw_while_parsing(
        self, uplink: records.Uplink, command: CommandRecord | None
    ) -> tuple[bool, Parsed]:
        """The raw record's publish and the sandbox call, at the same time. The parse runs
        in this task and only the publish gets one of its own (asyncio.gather would make
        two tasks and a future per contact); if this task is cancelled, so is the publish."""
        raw = asyncio.create_task(self._publish_raw(uplink))
        try:
            parsed = await self._parse(uplink, command)
        except BaseException:
            raw.cancel()
            raise
        return await raw, parsed

    async def _handle_route_authenticated_first(
        self, request: ContactRequest, uplink: records.Uplink
    ) -> ContactAnswer:
        """A route contact that may have to authenticate: identify and authenticate, then
        record, so that a refused contact leaves no uplink record at all."""
        parsed = await self._parse_after_failure(uplink, await self._parse(uplink, None))
        if parsed.response is None:
            if self._authenticate_first:  # who it is cannot be told now: the device retries
                return ContactAnswer(Outcome.RETRY_LATER)
            # Optional: as for any contact while the sandbox is away, its data is kept.
            if not await self._publish_raw(uplink):
                return ContactAnswer(Outcome.RETRY_LATER)
            return await self._finish(request, uplink, parsed, Identity(None), None)
        identity = await self._identity(uplink, parsed, request.presented)
        if self._authenticate(request, identity, parsed) is not None:
            return ContactAnswer(Outcome.UNAUTHENTICATED)
        forbidden = identity.refusal is not None and identity.refusal.forbidden
        if not forbidden and not await self._publish_raw(uplink):
            return ContactAnswer(Outcome.RETRY_LATER)
        return await self._finish(request, uplink, parsed, identity, None)

    def _authenticate(
        self, request: ContactRequest, identity: Identity, parsed: Parsed
    ) -> AuthFailure | None:
        """Why a route contact is not taken as the device identify() named (None: it is).

        Authentication comes first: a contact that does not prove it is the device named
        is refused 4.01 whatever else is wrong. A DTLS session or OSCORE context that
        proved another device did authenticate; that is a mismatch (4.03,
        `device_mismatch`, decided by RouteIdentities).
        """
        if request.device_id is not None:
            return None
        device_id, refusal = identity.device_id, identity.refusal
        if refusal is not None and refusal.proven_other:
            return None
        if device_id is None or (refusal is not None and not refusal.forbidden):
            if not self._authenticate_first:
                return None  # optional: the parser's failure is recorded as usual
            failure = AuthFailure.MISSING
        else:
            presented = _with_payload_token(request.presented, parsed)
            verdict = self._admission.authenticate(device_id, presented, request.remote)
            if verdict.failure is None and refusal is None:
                self._admission.admit_device(device_id)
            return verdict.failure
        self._admission.failed(failure, request.remote)
        return failure

    async def _finish(
        self,
        request: ContactRequest,
        uplink: records.Uplink,
        parsed: Parsed,
        identity: Identity,
        command: CommandRecord | None,
    ) -> ContactAnswer:
        """Publish what the contact produced, and answer it (with a command, if one waits)."""
        device_id, refusal = identity.device_id, identity.refusal
        if refusal is not None:
            if command is not None:
                await self._release(command)
            self._publish_failure(uplink, device_id, refusal.kind, refusal.message, None)
            return ContactAnswer(Outcome.FORBIDDEN if refusal.forbidden else Outcome.ACCEPTED)
        if uplink.device_id is None and device_id is not None:
            parsed = await self._parse_as_named(uplink, device_id, parsed)
        self._publish_result(uplink, device_id, parsed)
        # Delivered as this device: its last-seen time moves. Only registered devices
        # have one (a route may name devices the registry does not know).
        if device_id is not None and self._directory.known_type(device_id) is not None:
            self._last_seen.seen(device_id)
        body = b""
        if parsed.ok and parsed.response is not None and parsed.response.result.HasField("reply"):
            body = parsed.response.result.reply
        if request.confirmable and identity.verified:
            sent = await self._deliver_command(uplink, device_id, command, parsed)
            if sent is not None:
                body = sent
        return ContactAnswer(Outcome.ACCEPTED, body)

    async def _claim(self, device_id: str | None) -> CommandRecord | None:
        if device_id is None:
            return None
        try:
            return await self._desk.claim(device_id)
        except RepositoryError as exc:
            log.warning("command claim failed", extra={"device_id": device_id, "error": str(exc)})
            return None

    async def _release(self, command: CommandRecord) -> None:
        try:
            await self._desk.release(command)
        except RepositoryError as exc:
            # The stale-claim sweep requeues it later.
            log.warning("command release failed", extra={"request_id": command.request_id,
                        "error": str(exc)})  # fmt: skip

    async def _publish_raw(self, uplink: records.Uplink) -> bool:
        key = uplink.device_id.encode() if uplink.device_id else None
        try:
            await self._publisher.publish(
                self._topics.raw, records.encode(records.raw_record(uplink)), key
            )
        except PublishError as exc:
            log.warning("raw uplink not durable", extra={"uplink_id": uplink.id,
                        "device_id": uplink.device_id, "error": str(exc)})  # fmt: skip
            return False
        return True

    async def _parse_as_named(
        self, uplink: records.Uplink, device_id: str, parsed: Parsed
    ) -> Parsed:
        """A route contact's answer for the device identify() named: parsed again with its
        attributes when it has some (the first call could not know them)."""
        attributes = self._directory.attributes_json(device_id)
        if parsed.response is None or parsed.attributes_json == attributes:
            return parsed
        self._metrics.route_reparses.inc()
        return await self._parse(uplink, None, device_id=device_id)

    async def _parse_after_failure(self, uplink: records.Uplink, parsed: Parsed) -> Parsed:
        """A route contact whose parse() (or reply()) failed after identify() named a device
        that has attributes: parsed again as that device, with them, since the failure may
        come from their absence. The token token() found still counts."""
        response = parsed.response
        if uplink.device_id is not None or response is None or response.HasField("result"):
            return parsed
        if not response.HasField("identified_device_id"):
            return parsed
        device_id = response.identified_device_id
        if not self._directory.attributes_json(device_id):
            return parsed
        self._metrics.route_reparses.inc()
        again = await self._parse(uplink, None, device_id=device_id)
        if again.ok and again.response is not None and response.HasField("identified_token"):
            again.response.result.token = response.identified_token
        return again

    async def _parse(
        self,
        uplink: records.Uplink,
        command: CommandRecord | None,
        *,
        device_id: str | None = None,
    ) -> Parsed:
        """The sandbox's answer for the contact; `device_id` parses a route contact as that
        device (identify() already named it), else the contact's own id is used."""
        named = device_id or uplink.device_id
        attributes = self._directory.attributes_json(named)
        contact = ContactInput(
            payload=uplink.payload, device_type=uplink.device_type, device_id=named,
            path=uplink.path, method=uplink.method, confirmable=uplink.confirmable,
            received_at=int(uplink.received_at.timestamp()), query=uplink.query,
            attributes_json=attributes, uplink_id=uplink.id,
        )  # fmt: skip
        started = time.perf_counter()
        try:
            response = await self._sandbox.parse(
                contact,
                identify=named is None,
                command=None if command is None else self._command_input(command),
                timeout_s=self._limits.sandbox_timeout_s,
            )
        except (SandboxUnavailableError, SandboxRequestError) as exc:
            return Parsed(None, unavailable=str(exc), attributes_json=attributes)
        finally:
            self._metrics.child(self._metrics.sandbox_latency, "Parse").observe(
                time.perf_counter() - started
            )
        return Parsed(response, attributes_json=attributes)

    async def _identity(
        self, uplink: records.Uplink, parsed: Parsed, presented: Presented
    ) -> Identity:
        """The device id as now known, or why the contact must not be delivered."""
        if uplink.device_id is not None:  # a path id: checked, and registered with its type
            return Identity(uplink.device_id)
        response = parsed.response
        if response is None or not response.result.HasField("device_id"):
            return Identity(None)
        return await self._identities.check(
            response.result.device_id, route=uplink.path, device_type=uplink.device_type,
            proven=presented.proven_device,
        )  # fmt: skip

    def _publish_result(
        self, uplink: records.Uplink, device_id: str | None, parsed: Parsed
    ) -> None:
        """Publish uplink.parsed or uplink.failed."""
        response = parsed.response
        if response is not None and response.HasField("result"):
            result = response.result
            value = records.parsed_record(
                uplink,
                device_id=device_id,
                parser={"name": response.parser.name, "version": response.parser.version},
                data_json=result.data_json,
                warnings=list(result.warnings),
                printed=response.printed,
            )
            self._send(self._topics.parsed, value, device_id)
            return
        printed = ""
        if response is None:
            kind, message, line = "sandbox_unavailable", parsed.unavailable or "", None
        else:
            error = response.error
            kind, message = error_kind_name(error.kind), error.message
            line = error.line if error.HasField("line") else None
            printed = response.printed
        self._publish_failure(uplink, device_id, kind, message, line, printed)

    def _publish_failure(
        self,
        uplink: records.Uplink,
        device_id: str | None,
        kind: str,
        message: str,
        line: int | None,
        printed: str = "",
    ) -> None:
        self._metrics.parse_errors.labels(kind).inc()
        log.info("uplink failed", extra={"uplink_id": uplink.id, "device_id": device_id,
                 "kind": kind})  # fmt: skip
        failed = records.failed_record(
            uplink, device_id=device_id, kind=kind, message=message, line=line, printed=printed
        )
        self._send(self._topics.failed, records.encode(failed), device_id)

    def _send(self, topic: str, value: bytes, device_id: str | None) -> None:
        self._publisher.publish_later(topic, value, device_id.encode() if device_id else None)

    async def _deliver_command(
        self,
        uplink: records.Uplink,
        device_id: str | None,
        command: CommandRecord | None,
        parsed: Parsed,
    ) -> bytes | None:
        """The command bytes for this CON response, if a command is pending and formats."""
        if parsed.response is None:  # the sandbox is away: keep the command for later
            if command is not None:
                await self._retry_later(command, parsed.unavailable or "no answer")
            return None
        result: pb.CommandResult | str | None = None
        if command is not None and parsed.response.HasField("command"):
            result = parsed.response.command
        if command is None and uplink.device_id is None and device_id is not None:
            command = await self._claim(device_id)  # a route device, known only now
        if command is None:
            return None
        if result is None:
            result = await self._format(uplink.device_type, command)
        if isinstance(result, str):
            await self._retry_later(command, result)
            return None
        return await self._settle(command, result)

    def _command_input(self, command: CommandRecord) -> CommandInput:
        return CommandInput(
            request_id=command.request_id,
            device_id=command.device_id,
            command=command.name,
            params=command_params(command),
            attributes_json=self._directory.attributes_json(command.device_id),
        )

    async def _retry_later(self, command: CommandRecord, reason: str) -> None:
        try:
            await self._desk.retry_later(command, reason)
        except RepositoryError as exc:
            # The stale-claim sweep requeues it later.
            log.warning("command release failed", extra={"request_id": command.request_id,
                        "error": str(exc)})  # fmt: skip

    async def _format(self, device_type: str, command: CommandRecord) -> pb.CommandResult | str:
        """The sandbox's answer, or why the sandbox could not be asked (retriable)."""
        started = time.perf_counter()
        try:
            response = await self._sandbox.format_command(
                device_type, self._command_input(command), timeout_s=self._limits.sandbox_timeout_s
            )
        except SandboxUnavailableError as exc:
            return str(exc)
        except SandboxRequestError as exc:  # the sandbox refused this command: final
            message = pb.ScriptError(kind=pb.ERROR_KIND_INVALID_OUTPUT, message=str(exc))
            return pb.CommandResult(error=message)
        finally:
            self._metrics.sandbox_latency.labels("FormatCommand").observe(
                time.perf_counter() - started
            )
        return response.result

    async def _settle(self, command: CommandRecord, result: pb.CommandResult) -> bytes | None:
        try:
            if result.HasField("payload"):
                await self._desk.sent(command, result.payload)
                return result.payload
            error = result.error
            await self._desk.failed(command, f"{error_kind_name(error.kind)}: {error.message}")
        except RepositoryError as exc:
            log.warning("command outcome not stored", extra={"request_id": command.request_id,
                        "error": str(exc)})  # fmt: skip
        return None


def _with_payload_token(presented: Presented, parsed: Parsed) -> Presented:
    """What a route contact presented, with the token its parser's token() found (a token
    in the Uri-Query comes first)."""
    response = parsed.response
    if presented.token is not None or response is None or not response.result.HasField("token"):
        return presented
    return Presented(presented.dtls_device, response.result.token, presented.oscore_device)
