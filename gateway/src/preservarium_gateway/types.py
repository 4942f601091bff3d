"""The gateway's vocabulary of collaborators, as Protocols: tests and benchmarks swap them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from preservarium.contract.contact import Contact
from preservarium.sandbox_answers import CommandAnswer, ParseAnswer
from preservarium.sandbox_client import CommandInput


class ParserService(Protocol):
    """What the gateway needs of the sandbox (SandboxClient is the real one)."""

    async def start(self) -> None:
        """Open connections."""

    async def stop(self) -> None:
        """Close connections."""

    async def parse(
        self,
        contact: Contact,
        *,
        identify: bool = False,
        command: CommandInput | None = None,
        timeout_s: float | None = None,
    ) -> ParseAnswer:
        """Parse one contact (and format a command in the same call)."""
        ...

    async def format_command(
        self, device_type: str, command: CommandInput, *, timeout_s: float | None = None
    ) -> CommandAnswer:
        """Format one command."""
        ...


class RecordPublisher(Protocol):
    """What publishes a record and waits for the broker (KafkaPublisher is the real one)."""

    async def publish(self, topic: str, value: bytes, key: bytes | None) -> None:
        """Return once the broker acknowledged the record; PublishError otherwise."""
        ...


class UplinkPublisher(RecordPublisher, Protocol):
    """What the contact pipeline publishes with: the raw record is waited for, the others
    are not (KafkaPublisher is the real one)."""

    def publish_later(self, topic: str, value: bytes, key: bytes | None) -> None:
        """Publish without making the caller wait; a failure is logged and counted."""
        ...


class LastSeenStore(Protocol):
    """Where the last-seen times of devices are written, in batches."""

    async def record_seen(self, seen: Mapping[str, datetime]) -> int:
        """Keep, per device, the later of the stored time and the given one."""
        ...
