"""The sandbox client: the one place where gRPC failures become SDK errors."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc

from preservarium.errors import PreservariumError
from preservarium.lifecycle import AsyncLifecycle
from preservarium.parse_stream import ParseStream, StreamBrokenError
from preservarium.sandbox.v1 import sandbox_pb2 as pb
from preservarium.sandbox.v1 import sandbox_pb2_grpc as pb_grpc
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
class ContactInput:
    """One device contact, as the parser will see it."""

    payload: bytes
    device_type: str
    device_id: str | None = None
    path: str = ""
    method: str = "POST"
    confirmable: bool = True
    received_at: int = 0
    query: Mapping[str, str] = field(default_factory=dict)
    # The device's attributes as compact JSON ("" is {}): the gateway's cache holds them so.
    attributes_json: str = ""
    uplink_id: str | None = None

    def to_proto(self) -> pb.Contact:
        """The proto form."""
        contact = pb.Contact(
            payload=self.payload,
            device_type=self.device_type,
            path=self.path,
            method=self.method,
            confirmable=self.confirmable,
            received_at=self.received_at,
            query=dict(self.query),
            attributes_json=self.attributes_json,
        )
        if self.device_id is not None:
            contact.device_id = self.device_id
        if self.uplink_id is not None:
            contact.uplink_id = self.uplink_id
        return contact


@dataclass(frozen=True, slots=True)
class CommandInput:
    """One command request, as format_command() will see it."""

    request_id: str
    device_id: str
    command: str
    params: Mapping[str, Any] = field(default_factory=dict)
    attributes_json: str = ""

    def to_proto(self) -> pb.Command:
        """The proto form."""
        return pb.Command(
            request_id=self.request_id,
            device_id=self.device_id,
            command=self.command,
            params_json=json.dumps(dict(self.params)),
            attributes_json=self.attributes_json,
        )


# A kind this client does not know (a newer sandbox during a rolling upgrade) is still a
# script's failure: it is reported as the most general one instead of failing the contact.
UNKNOWN_KIND = "runtime_error"


def error_kind_name(kind: int) -> str:
    """`ERROR_KIND_TIMEOUT` -> `timeout`; an unknown number -> `runtime_error`."""
    try:
        name = pb.ErrorKind.Name(kind)
    except ValueError:
        return UNKNOWN_KIND
    return name.removeprefix("ERROR_KIND_").lower()


class SandboxClient(AsyncLifecycle):
    """Calls ParserSandbox with a deadline; reconnects by itself (gRPC channel)."""

    def __init__(
        self,
        address: str,
        *,
        timeout_s: float = 1.0,
        streams: int = 0,
        supervisor: Supervisor | None = None,
    ) -> None:
        """`streams` > 0 sends parse() over that many long-lived ParseStream calls
        (spread over the sandboxes by round robin) instead of one unary call each;
        their readers run under `supervisor`."""
        self.address = address
        self.timeout_s = timeout_s
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None  # the generated stub is untyped
        self._stream_count = streams
        self._streams: list[ParseStream | None] = [None] * streams
        self._turn = 0
        self._supervisor = supervisor or Supervisor()

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
        contact: ContactInput,
        *,
        identify: bool = False,
        command: CommandInput | None = None,
        timeout_s: float | None = None,
        version: int | None = None,
        background: bool = False,
    ) -> pb.ParseResponse:
        """Parse one contact with the active parser of its device type (or with stored
        version `version` of it); `background` work (a replay) yields to live contacts."""
        request = pb.ParseRequest(
            device_type=contact.device_type, contact=contact.to_proto(), identify=identify,
            background=background,
        )  # fmt: skip
        if version is not None:
            request.version = version
        if command is not None:
            request.command.CopyFrom(command.to_proto())
        if self._stream_count:
            return await self._parse_on_stream(request, timeout_s or self.timeout_s)
        response: pb.ParseResponse = await self._call(
            self._require_stub().Parse, request, timeout_s
        )
        return response

    async def _parse_on_stream(
        self, request: pb.ParseRequest, timeout_s: float
    ) -> pb.ParseResponse:
        self._turn = (self._turn + 1) % self._stream_count
        stream = self._streams[self._turn]
        if stream is None or stream.broken is not None:
            if stream is not None:
                await stream.close()
            stream = self._streams[self._turn] = ParseStream(
                self._require_stub(), supervisor=self._supervisor
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
    ) -> pb.FormatCommandResponse:
        """Format one command with the active parser of `device_type`."""
        request = pb.FormatCommandRequest(device_type=device_type, command=command.to_proto())
        stub = self._require_stub()
        response: pb.FormatCommandResponse = await self._call(
            stub.FormatCommand, request, timeout_s
        )
        return response

    async def test_parser(
        self,
        source: str,
        *,
        contact: ContactInput | None = None,
        identify: bool = False,
        command: CommandInput | None = None,
        timeout_s: float | None = None,
    ) -> pb.TestParserResponse:
        """Run an unsaved source on a contact and/or a command."""
        request = pb.TestParserRequest(source=source, identify=identify)
        if contact is not None:
            request.contact.CopyFrom(contact.to_proto())
        if command is not None:
            request.command.CopyFrom(command.to_proto())
        stub = self._require_stub()
        response: pb.TestParserResponse = await self._call(stub.TestParser, request, timeout_s)
        return response
