"""The command desk: commands stored durably, claimed atomically at a contact, formatted
by the device's parser, and settled (sent, failed, or back in the queue), every status
reported on Kafka.

`PendingCommandIndex` keeps the database off the hot path: only a contact from a device
that has a pending command costs a query (the atomic claim). The index is refreshed
from the database, so it stays right across restarts and beside other gateways.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import timedelta

from preservarium.contract.command_requests import (
    CommandRequest,
    Rejection,
    stored_params,
    stored_params_json,
    stored_params_valid,
)
from preservarium.contract.encoding import encode
from preservarium.contract.kinds import ErrorKind
from preservarium.contract.status import Status, status_record
from preservarium.contract.topics import Topics
from preservarium.db.models import utcnow
from preservarium.errors import ConflictError, NotFoundError, RepositoryError
from preservarium.lifecycle import AsyncLifecycle
from preservarium.periodic import Periodic
from preservarium.repositories import CommandRecord, SQLCommandRepository
from preservarium.repositories.commands import CommandStatus
from preservarium.sandbox_answers import CommandAnswer, ScriptError
from preservarium.sandbox_client import CommandInput, SandboxRequestError, SandboxUnavailableError
from preservarium.supervisor import Supervisor
from preservarium.text import clean_text

from preservarium_gateway.config import GatewayLimits
from preservarium_gateway.directory import DeviceDirectory
from preservarium_gateway.metrics import GatewayMetrics
from preservarium_gateway.pending_commands import PendingCommandIndex
from preservarium_gateway.status_outbox import StatusOutbox
from preservarium_gateway.types import ParserService, RecordPublisher

log = logging.getLogger("preservarium.gateway.commands")
StatusObserver = Callable[[str], None]
# Contacts whose sandbox call failed (unreachable, no answer in time) before a command
# is given up as `failed`: a command that hangs the sandbox must not ride on every
# contact of its device forever. Counted per gateway process.
MAX_UNAVAILABLE_ATTEMPTS = 3
# Commands whose sandbox-unavailable attempts are counted at once. A command settled by
# another gateway (or cancelled) never comes back here to clear its count: the oldest
# counts are dropped past this bound, which costs such a command at most a few more tries.
MAX_COUNTED_COMMANDS = 10_000


class CommandDesk(AsyncLifecycle):
    """Stores, claims and settles commands, and reports every status on Kafka."""

    def __init__(
        self,
        *,
        repository: SQLCommandRepository,
        publisher: RecordPublisher,
        topics: Topics,
        limits: GatewayLimits,
        claimer: str,
        on_status: StatusObserver | None = None,
        max_attempts: int = MAX_UNAVAILABLE_ATTEMPTS,
        max_counted: int = MAX_COUNTED_COMMANDS,
        supervisor: Supervisor | None = None,
        sandbox: ParserService | None = None,
        directory: DeviceDirectory | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        """`sandbox` formats the commands it delivers (with each device's attributes from
        `directory`); a desk without one only stores, claims and settles."""
        self._repository = repository
        self._sandbox = sandbox
        self._directory = directory
        self._metrics = metrics
        # Statuses are kept until Kafka has them: through an outage, not a crash.
        self.outbox = StatusOutbox(publisher, topic=topics.command_status, supervisor=supervisor)
        self._limits = limits
        self._claimer = claimer
        self._on_status = on_status or (lambda status: None)
        self.index = PendingCommandIndex()
        self._max_attempts = max_attempts
        self._max_counted = max_counted
        self._attempts: OrderedDict[str, int] = OrderedDict()
        self._housekeeper = Periodic(
            self._housekeeping, interval_s=limits.commands_refresh_s,
            name="command-housekeeping", supervisor=supervisor,
        )  # fmt: skip

    async def start(self) -> None:
        """Learn which devices have pending commands, then keep checking."""
        await self.refresh()
        await self.outbox.start()
        self._housekeeper.start()

    async def stop(self) -> None:
        """Stop housekeeping, then publish the statuses held (bounded); idempotent."""
        await self._housekeeper.stop()
        await self.outbox.stop()

    def emit(
        self,
        status: str,
        *,
        request_id: str | None,
        device_id: str | None,
        reason: str | None = None,
        payload: bytes | None = None,
    ) -> None:
        """Publish a `command.status` record (without holding up the caller; held until
        Kafka acknowledges it)."""
        record = status_record(
            request_id=request_id,
            device_id=device_id,
            status=status,
            at=utcnow(),
            reason=reason,
            payload=payload,
        )
        key = clean_text(device_id).encode() if device_id else None
        self.outbox.put(encode(record), key)
        self._on_status(status)

    async def refresh(self) -> None:
        """Re-read the devices with queued commands."""
        self.index.reading()
        self.index.replace(await self._repository.pending_device_ids())

    async def _housekeeping(self) -> None:
        await self.expire()
        stale = utcnow() - timedelta(seconds=self._limits.stale_claim_s)
        await self._repository.requeue_stale_claims(stale)
        await self.refresh()

    async def expire(self) -> None:
        """Expire what is past its time and report it."""
        for command in await self._repository.expire_due():
            self._attempts.pop(command.request_id, None)
            self.emit(Status.EXPIRED, request_id=command.request_id, device_id=command.device_id)

    async def store(self, request: CommandRequest) -> None:
        """Store a valid request durably and report it queued.

        The same request again (a redelivery, an integrator's retry) is a no-op; a
        request id already used for another device or command is rejected, and so is a
        request for a device that has `command_queue_limit` commands waiting already.
        """
        limit = self._limits.command_queue_limit
        if await self._repository.queued_count(request.device_id) >= limit:
            try:
                await self._repository.get(request.request_id)
            except NotFoundError:
                self.reject(Rejection(
                    f"the device has {limit} commands waiting already "
                    "(PRESERVARIUM_COMMAND_QUEUE_LIMIT)",
                    request.request_id, request.device_id,
                ))  # fmt: skip
                return
            await self._seen_before(request)
            return
        try:
            await self._repository.add(
                request_id=request.request_id,
                device_id=request.device_id,
                name=request.command,
                body=request.body(),
                expires_at=request.expires_at,
            )
        except ConflictError:
            await self._seen_before(request)
            return
        self.index.add(request.device_id)
        self.emit(Status.QUEUED, request_id=request.request_id, device_id=request.device_id)

    async def _seen_before(self, request: CommandRequest) -> None:
        try:
            existing = await self._repository.get(request.request_id)
        except NotFoundError:  # removed in between: nothing to compare with
            return
        same = (existing.device_id, existing.name, stored_params(existing.body)) == (
            request.device_id, request.command, request.params,
        )  # fmt: skip
        if same:
            log.info("command request seen before", extra={"request_id": request.request_id})
            return
        self.reject(Rejection(
            "request_id is already used for another command or device",
            request.request_id, request.device_id,
        ))  # fmt: skip

    @property
    def counted(self) -> int:
        """How many commands have sandbox-unavailable attempts counted now."""
        return len(self._attempts)

    def reject(self, rejection: Rejection) -> None:
        """Report an invalid request."""
        self.emit(
            Status.REJECTED,
            request_id=rejection.request_id,
            device_id=rejection.device_id,
            reason=rejection.reason,
        )

    async def claim(self, device_id: str) -> CommandRecord | None:
        """The oldest queued command of `device_id`, now ours to send, or None.

        A command whose stored params no longer pass validation (stored by an older
        gateway) is failed here instead of being handed to the sandbox.
        """
        if device_id not in self.index:
            return None
        while True:
            command = await self._repository.claim_next(device_id, claimer=self._claimer)
            if command is None:
                self.index.discard(device_id)
                return None
            if stored_params_valid(command.body):
                return command
            await self.failed(command, "the stored params are not valid JSON for a command")

    async def sent(self, command: CommandRecord, payload: bytes) -> None:
        """The command's bytes left in a CoAP response."""
        self._attempts.pop(command.request_id, None)
        await self._repository.finish(command.request_id, CommandStatus.SENT, claimer=self._claimer)
        self.emit(Status.SENT, request_id=command.request_id, device_id=command.device_id,
                  payload=payload)  # fmt: skip

    async def failed(self, command: CommandRecord, reason: str) -> None:
        """format_command() could not produce the command's bytes: final."""
        self._attempts.pop(command.request_id, None)
        await self._repository.finish(
            command.request_id, CommandStatus.FAILED, reason=reason, claimer=self._claimer
        )
        self.emit(Status.FAILED, request_id=command.request_id, device_id=command.device_id,
                  reason=reason)  # fmt: skip

    async def release(self, command: CommandRecord) -> None:
        """The contact could not carry the command (not the command's fault): queue it
        again for the next one."""
        await self._repository.release(command.request_id, claimer=self._claimer)
        self.index.add(command.device_id)

    async def retry_later(self, command: CommandRecord, reason: str) -> None:
        """The sandbox could not be asked about the command: queue it again, or, after
        `max_attempts` such contacts, give it up as `failed` with `reason`."""
        attempts = self._attempts.get(command.request_id, 0) + 1
        if attempts >= self._max_attempts:
            await self.failed(command, f"sandbox_unavailable after {attempts} attempts: {reason}")
            return
        self._attempts[command.request_id] = attempts
        self._attempts.move_to_end(command.request_id)
        while len(self._attempts) > self._max_counted:
            self._attempts.popitem(last=False)
        await self.release(command)

    # Delivery: what a contact does with a command. A database that cannot be asked
    # never fails the contact: the command stays where it was, and the stale-claim sweep
    # queues again whatever was left claimed.

    async def claim_for_contact(self, device_id: str | None) -> CommandRecord | None:
        """The command to send in this contact's answer, claimed; None when there is
        none or the database cannot say."""
        if device_id is None:
            return None
        try:
            return await self.claim(device_id)
        except RepositoryError as exc:
            log.warning("command claim failed", extra={"device_id": device_id, "error": str(exc)})
            return None

    def command_input(self, command: CommandRecord) -> CommandInput:
        """The command as format_command() sees it, with its device's attributes."""
        attributes = (
            "" if self._directory is None else self._directory.attributes_json(command.device_id)
        )
        return CommandInput(
            request_id=command.request_id,
            device_id=command.device_id,
            command=command.name,
            params_json=stored_params_json(command.body),
            attributes_json=attributes,
        )

    async def release_after_contact(self, command: CommandRecord) -> None:
        """The contact could not carry the command: queue it again for the next one."""
        try:
            await self.release(command)
        except RepositoryError as exc:
            log.warning("command release failed", extra={"request_id": command.request_id,
                        "error": str(exc)})  # fmt: skip

    async def retry_after_contact(self, command: CommandRecord, reason: str) -> None:
        """The sandbox could not be asked about the command: `retry_later`."""
        try:
            await self.retry_later(command, reason)
        except RepositoryError as exc:
            log.warning("command release failed", extra={"request_id": command.request_id,
                        "error": str(exc)})  # fmt: skip

    async def deliver(
        self, command: CommandRecord, *, device_type: str, formatted: CommandAnswer | None
    ) -> bytes | None:
        """The command's bytes for the answer, settled as sent (or failed, or queued again
        when the sandbox could not be asked); `formatted` is the sandbox's answer when the
        parse call formatted it already."""
        result = formatted if formatted is not None else await self._format(device_type, command)
        if isinstance(result, str):
            await self.retry_after_contact(command, result)
            return None
        return await self._settle(command, result)

    async def _format(self, device_type: str, command: CommandRecord) -> CommandAnswer | str:
        """The sandbox's answer, or why the sandbox could not be asked (retriable)."""
        if self._sandbox is None:
            return "this desk has no sandbox to format commands"
        started = time.perf_counter()
        try:
            answer = await self._sandbox.format_command(
                device_type, self.command_input(command), timeout_s=self._limits.sandbox_timeout_s
            )
        except SandboxUnavailableError as exc:
            return str(exc)
        except SandboxRequestError as exc:  # the sandbox refused this command: final
            return CommandAnswer(error=ScriptError(ErrorKind.INVALID_OUTPUT, str(exc)))
        finally:
            if self._metrics is not None:
                self._metrics.sandbox_latency.labels("FormatCommand").observe(
                    time.perf_counter() - started
                )
        return answer

    async def _settle(self, command: CommandRecord, answer: CommandAnswer) -> bytes | None:
        try:
            if answer.payload is not None:
                await self.sent(command, answer.payload)
                return answer.payload
            error = answer.error or ScriptError(ErrorKind.INVALID_OUTPUT, "no bytes and no error")
            await self.failed(command, f"{error.kind}: {error.message}")
        except RepositoryError as exc:
            log.warning("command outcome not stored", extra={"request_id": command.request_id,
                        "error": str(exc)})  # fmt: skip
        return None
