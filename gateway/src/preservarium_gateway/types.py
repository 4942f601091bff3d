"""The gateway's vocabulary of collaborators, as Protocols: tests and benchmarks swap them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from preservarium.clock import Clock as Clock
from preservarium.sandbox.v1 import sandbox_pb2 as pb
from preservarium.sandbox_client import CommandInput, ContactInput


class ParserService(Protocol):
    """What the gateway needs of the sandbox (SandboxClient is the real one)."""

    async def start(self) -> None:
        """Open connections."""

    async def stop(self) -> None:
        """Close connections."""

    async def parse(
        self,
        contact: ContactInput,
        *,
        identify: bool = False,
        command: CommandInput | None = None,
        timeout_s: float | None = None,
    ) -> pb.ParseResponse:
        """Parse one contact (and format a command in the same call)."""
        ...

    async def format_command(
        self, device_type: str, command: CommandInput, *, timeout_s: float | None = None
    ) -> pb.FormatCommandResponse:
        """Format one command."""
        ...


class RecordPublisher(Protocol):
    """What publishes a record and waits for the broker (KafkaPublisher is the real one)."""

    async def publish(self, topic: str, value: bytes, key: bytes | None) -> None:
        """Return once the broker acknowledged the record; PublishError otherwise."""
        ...


class LastSeenStore(Protocol):
    """Where the last-seen times of devices are written, in batches."""

    async def record_seen(self, seen: Mapping[str, datetime]) -> int:
        """Keep, per device, the later of the stored time and the given one."""
        ...
