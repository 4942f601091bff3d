"""The gateway's vocabulary of collaborators, as Protocols: tests and benchmarks swap them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from preservarium.clock import Clock as Clock
from preservarium.contract.contact import Contact
from preservarium.repositories import CommandRecord
from preservarium.repositories.commands import CommandStatus
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


class CommandStore(Protocol):
    """Where the command desk keeps commands (SQLCommandRepository is the real one; an
    in-memory one serves the desk's unit tests). Claims are atomic: one claimer each."""

    async def add(
        self, *, request_id: str, device_id: str, name: str, body: str, expires_at: datetime
    ) -> CommandRecord:
        """Store a queued command; ConflictError if the request id exists."""
        ...

    async def get(self, request_id: str) -> CommandRecord:
        """One command; NotFoundError if there is none."""
        ...

    async def queued_count(self, device_id: str) -> int:
        """Commands of `device_id` queued (expired or not) or claimed."""
        ...

    async def pending_device_ids(self) -> set[str]:
        """Devices with at least one queued command."""
        ...

    async def claim_next(self, device_id: str, *, claimer: str) -> CommandRecord | None:
        """Take the oldest unexpired queued command of `device_id`, or None."""
        ...

    async def finish(
        self,
        request_id: str,
        status: CommandStatus,
        *,
        reason: str | None = None,
        claimer: str | None = None,
    ) -> CommandRecord:
        """Settle a claimed command; ConflictError when `claimer` no longer holds it."""
        ...

    async def release(self, request_id: str, *, claimer: str | None = None) -> None:
        """Queue a claimed command again (only while `claimer` holds it)."""
        ...

    async def requeue_stale_claims(self, older_than: datetime) -> int:
        """Queue again the claims taken before `older_than`."""
        ...

    async def expire_due(self) -> list[CommandRecord]:
        """Expire every queued command past its time; return them."""
        ...
