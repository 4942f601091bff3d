"""The sandbox client: the one place where gRPC failures become SDK errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from preservarium.contract.contact import Contact
from preservarium.contract.kinds import ErrorKind
from preservarium.errors import PreservariumError
from preservarium.lifecycle import AsyncLifecycle
from preservarium.parse_stream import BatchObserver, ParseStream, StreamBrokenError
from preservarium.sandbox.v1 import sandbox_pb2 as pb
from preservarium.sandbox.v1 import sandbox_pb2_grpc as pb_grpc
from preservarium.sandbox_answers import (
    CommandAnswer,
    ParseAnswer,
    ParserVersion,
    ScriptError,
    TrialAnswer,
)
from preservarium.supervisor import Supervisor

CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    ("grpc.lb_policy_name", "round_robin"),
]


class SandboxUnavailableError(PreservariumError):
    """The sandbox could not be reached or did not answer in time; retriable."""

    retriable = True


class SandboxRequestError(PreservariumError):
    """The sandbox refused the request itself (INVALID_ARGUMENT): not retriable."""


@dataclass(frozen=True, slots=True)
class CommandInput:
    """One command request, as format_command() will see it."""

    request_id: str
    device_id: str
    command: str
    # The params object as JSON text: stored so, and handed on as it is.
    params_json: str = "{}"
    attributes_json: str = ""

    def to_proto(self) -> pb.Command:
        """The proto form."""
        return pb.Command(
            request_id=self.request_id,
            device_id=self.device_id,
            command=self.command,
            params_json=self.params_json,
            attributes_json=self.attributes_json,
        )


# A kind this client does not know (a newer sandbox during a rolling upgrade) is still a
# script's failure: it is reported as the most general one instead of failing the contact.
UNKNOWN_KIND = ErrorKind.RUNTIME_ERROR
# The parser of a TestParser answer: an unsaved source has no name or version.
UNSAVED = ParserVersion("", 0)


def error_kind_name(kind: int) -> ErrorKind:
    """`ERROR_KIND_TIMEOUT` -> `timeout`; an unknown number -> `runtime_error`."""
    try:
        return ErrorKind(pb.ErrorKind.Name(kind).removeprefix("ERROR_KIND_").lower())
    except ValueError:
        return UNKNOWN_KIND


def script_error(error: pb.ScriptError) -> ScriptError:
    """The SDK value of a proto ScriptError."""
    line = error.line if error.HasField("line") else None
    return ScriptError(error_kind_name(error.kind), error.message, line)


def command_answer(result: pb.CommandResult) -> CommandAnswer:
    """The SDK value of a proto CommandResult."""
    if result.HasField("payload"):
        return CommandAnswer(payload=result.payload)
    return CommandAnswer(error=script_error(result.error))


def parse_answer(response: pb.ParseResponse | pb.TestParserResponse) -> ParseAnswer:
    """The SDK value of a proto ParseResponse (or of TestParser's, which names no stored
    parser version: `ParserVersion("", 0)`). On the gateway's hot path: lean on purpose."""
    parser, named, token = UNSAVED, None, None
    if type(response) is pb.ParseResponse:
        ref = response.parser
        parser = ParserVersion(ref.name, ref.version)
        if response.HasField("identified_device_id"):
            named = response.identified_device_id
        if response.HasField("identified_token"):
            token = response.identified_token
    command = command_answer(response.command) if response.HasField("command") else None
    if not response.HasField("result"):
        error = script_error(response.error)
        return ParseAnswer(parser, error, None, b"", (), None, None, command, response.printed,
                           named, token)  # fmt: skip
    result = response.result
    device_id = result.device_id if result.HasField("device_id") else None
    reply = result.reply if result.HasField("reply") else None
    found = result.token if result.HasField("token") else None
    return ParseAnswer(parser, None, device_id, result.data_json, tuple(result.warnings), reply,
                       found, command, response.printed)  # fmt: skip


def trial_answer(response: pb.TestParserResponse) -> TrialAnswer:
    """The SDK value of a proto TestParserResponse."""
    return TrialAnswer(parse_answer(response), response.duration_ms)


def contact_proto(contact: Contact) -> pb.Contact:
    """The proto form of a contact."""
    message = pb.Contact(
        payload=contact.payload,
        device_type=contact.device_type,
        path=contact.path,
        method=contact.method,
        confirmable=contact.confirmable,
        received_at=contact.received_at_s,
        query=dict(contact.query),
        attributes_json=contact.attributes_json,
    )
    if contact.device_id is not None:
        message.device_id = contact.device_id
    if contact.id is not None:
        message.uplink_id = contact.id
    return message


class SandboxClient(AsyncLifecycle):
    """Calls ParserSandbox with a deadline; reconnects by itself (gRPC channel)."""

    def __init__(
        self,
        address: str,
        *,
        timeout_s: float = 1.0,
        streams: int = 0,
        supervisor: Supervisor | None = None,
        on_batch: BatchObserver | None = None,
    ) -> None:
        """`streams` > 0 sends parse() over that many long-lived ParseStream calls
        (spread over the sandboxes by round robin) instead of one unary call each;
        their readers and writers run under `supervisor`, and `on_batch` is told how
        many contacts each stream message carried."""
        self.address = address
        self.timeout_s = timeout_s
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None  # the generated stub is untyped
        self._stream_count = streams
        self._streams: list[ParseStream | None] = [None] * streams
        self._turn = 0
        self._supervisor = supervisor or Supervisor()
        self._on_batch = on_batch

    async def start(self) -> None:
        """Open the channel (connection happens lazily, and again after failures)."""
        # Several addresses spread calls over several sandboxes (round robin).
        target = f"ipv4:{self.address}" if "," in self.address else self.address
        self._channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        self._stub = pb_grpc.ParserSandboxStub(self._channel)  # type: ignore[no-untyped-call]

    async def stop(self) -> None:
        """Close the channel; idempotent."""
        streams, self._streams = self._streams, [None] * self._stream_count
        for stream in streams:
            if stream is not None:
                await stream.close()
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close(grace=None)

    def _require_stub(self) -> Any:
        if self._stub is None:
            raise SandboxUnavailableError("the sandbox client is not started")
        return self._stub

    async def _call(self, method: Any, request: Any, timeout_s: float | None) -> Any:
        try:
            return await method(request, timeout=timeout_s or self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                raise SandboxRequestError(f"sandbox refused the request: {exc.details()}") from exc
            raise SandboxUnavailableError(
                f"sandbox at {self.address} unavailable ({code.name}): {exc.details()}"
            ) from exc

    async def parse(
        self,
        contact: Contact,
        *,
        identify: bool = False,
        command: CommandInput | None = None,
        timeout_s: float | None = None,
        version: int | None = None,
        background: bool = False,
    ) -> ParseAnswer:
        """Parse one contact with the active parser of its device type (or with stored
        version `version` of it); `background` work (a replay) yields to live contacts,
        and its answer says how many live calls waited behind background work meanwhile
        (`ParseAnswer.live_waited`)."""
        request = pb.ParseRequest(
            contact=contact_proto(contact), identify=identify, background=background
        )
        if version is not None:
            request.version = version
        if command is not None:
            request.command.CopyFrom(command.to_proto())
        response: pb.ParseResponse
        if self._stream_count:
            response = await self._parse_on_stream(request, timeout_s or self.timeout_s)
        else:
            response = await self._call(self._require_stub().Parse, request, timeout_s)
        if background:
            return parse_answer(response)._replace(live_waited=response.live_waited)
        return parse_answer(response)

    async def _parse_on_stream(
        self, request: pb.ParseRequest, timeout_s: float
    ) -> pb.ParseResponse:
        self._turn = (self._turn + 1) % self._stream_count
        stream = self._streams[self._turn]
        if stream is None or stream.broken is not None:
            if stream is not None:
                await stream.close()
            stream = self._streams[self._turn] = ParseStream(
                self._require_stub(), supervisor=self._supervisor, on_batch=self._on_batch
            )
        try:
            return await stream.request(request, timeout_s)
        except StreamBrokenError as exc:
            raise SandboxUnavailableError(
                f"sandbox at {self.address} unavailable: {exc.reason}"
            ) from exc
        except TimeoutError as exc:
            raise SandboxUnavailableError(
                f"sandbox at {self.address} did not answer within {timeout_s} s"
            ) from exc

    async def format_command(
        self, device_type: str, command: CommandInput, *, timeout_s: float | None = None
    ) -> CommandAnswer:
        """Format one command with the active parser of `device_type`."""
        request = pb.FormatCommandRequest(device_type=device_type, command=command.to_proto())
        stub = self._require_stub()
        response: pb.FormatCommandResponse = await self._call(
            stub.FormatCommand, request, timeout_s
        )
        return command_answer(response.result)

    async def test_parser(
        self,
        source: str,
        *,
        contact: Contact | None = None,
        identify: bool = False,
        command: CommandInput | None = None,
        timeout_s: float | None = None,
    ) -> TrialAnswer:
        """Run an unsaved source on a contact and/or a command (on neither: compile it)."""
        request = pb.TestParserRequest(source=source, identify=identify)
        if contact is not None:
            request.contact.CopyFrom(contact_proto(contact))
        if command is not None:
            request.command.CopyFrom(command.to_proto())
        stub = self._require_stub()
        response: pb.TestParserResponse = await self._call(stub.TestParser, request, timeout_s)
        return trial_answer(response)
