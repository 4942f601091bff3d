"""Command use cases: build and publish a `command.request` (CLI `command send`, API POST
/commands), and cancel a queued command (CLI `command cancel`, API DELETE /commands/{id}).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from preservarium.contract.command_requests import (
    MAX_NAME,
    MAX_RECORD_BYTES,
    MAX_REQUEST_ID,
    MAX_TTL_S,
    CommandRequestError,
    Rejection,
    loads_strict,
    request_record,
    validate_command_record,
)
from preservarium.contract.encoding import encode
from preservarium.contract.status import CANCEL_REASON, Status, status_record
from preservarium.errors import ConflictError, NotFoundError
from preservarium.ids import is_device_id
from preservarium.usecases.errors import invalid

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from preservarium.repositories import CommandRecord

# Publishes one record (topic, value, key) and returns once the broker acknowledged it.
Publish = Callable[[str, bytes, bytes | None], Awaitable[None]]
STATUSES = ("queued", "claimed", "sent", "failed", "expired", "rejected")


def build_request(
    device_id: str,
    name: str,
    *,
    params: dict[str, Any] | None = None,
    ttl_s: int | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """The `command.request` record these values describe; InvalidInputError (exit 2)
    otherwise. It is checked by the rules the gateway applies to what it reads, so a
    command published from here is never `rejected` as invalid."""
    if not is_device_id(device_id):
        raise invalid(
            "device_id",
            f"invalid device id {device_id!r}: use 1 to 64 characters of A-Z a-z 0-9 . _ : -",
        )
    if not 1 <= len(name) <= MAX_NAME:
        raise invalid("command", f"invalid command name: use 1 to {MAX_NAME} characters")
    if request_id is not None and not 1 <= len(request_id) <= MAX_REQUEST_ID:
        raise invalid("request_id", f"invalid request id: use 1 to {MAX_REQUEST_ID} characters")
    if ttl_s is not None and not 0 < ttl_s <= MAX_TTL_S:
        raise invalid(
            "ttl_s", f"--ttl must be from 1 to {MAX_TTL_S} seconds (30 days), got {ttl_s}"
        )
    record = request_record(
        request_id=request_id or uuid.uuid4().hex, device_id=device_id, command=name,
        params=params or {}, ttl_s=ttl_s,
    )  # fmt: skip
    checked = validate_command_record(record, now=datetime.now(UTC))
    if isinstance(checked, Rejection):
        raise invalid("command", f"invalid command: {checked.reason}")
    if len(encode(record)) > MAX_RECORD_BYTES:
        raise invalid("params", f"the command is over {MAX_RECORD_BYTES} bytes once encoded")
    return record


def params_from_json(text: str | None) -> dict[str, Any]:
    """`--params` text as an object; InvalidInputError (exit 2) otherwise."""
    if text is None:
        return {}
    try:
        params = loads_strict(text)
    except CommandRequestError as exc:
        raise invalid("params", f"--params: {exc.reason}") from None
    if not isinstance(params, dict):
        raise invalid("params", f"--params must be a JSON object, got {type(params).__name__}")
    return params


async def require_registered(engine: AsyncEngine, device_id: str) -> None:
    """NotFoundError, saying what to do, when `device_id` is not registered."""
    from preservarium.repositories import SQLDeviceRepository

    try:
        await SQLDeviceRepository(engine).get(device_id)
    except NotFoundError:
        raise NotFoundError(
            f"device {device_id!r} is not registered: register it (preservarium device "
            f"register {device_id} --type TYPE), or, for a device reached on a route "
            "(no registration needed), pass --force"
        ) from None


async def send_command(publish: Publish, topic: str, record: dict[str, Any]) -> None:
    """Publish a built `command.request` record, keyed by its device."""
    await publish(topic, encode(record), record["device_id"].encode())


async def cancel_stored(engine: AsyncEngine, request_id: str) -> tuple[CommandRecord, bool]:
    """Mark a queued command expired with the reason "cancelled": (the command, True).

    A command cancelled before comes back as it is, with False, so that its status can
    be published again. NotFoundError for an unknown request id; ConflictError for a
    command a gateway is sending right now, or that ended otherwise.
    """
    from preservarium.repositories import SQLCommandRepository
    from preservarium.repositories.commands import CommandStatus

    repository = SQLCommandRepository(engine)
    try:
        return await repository.cancel(request_id, reason=CANCEL_REASON), True
    except ConflictError:
        current = await repository.get(request_id)
        if (current.status, current.reason) == (CommandStatus.EXPIRED, CANCEL_REASON):
            return current, False
        raise


def cancelled_status(record: CommandRecord, *, at: datetime) -> dict[str, Any]:
    """The `command.status` record of a cancelled command, as the gateway writes one."""
    return status_record(
        request_id=record.request_id, device_id=record.device_id, status=Status.EXPIRED, at=at,
        reason=CANCEL_REASON,
    )  # fmt: skip


async def publish_cancelled(publish: Publish, topic: str, record: CommandRecord) -> None:
    """Tell consumers on command.status that `record` was cancelled."""
    value = encode(cancelled_status(record, at=datetime.now(UTC)))
    await publish(topic, value, record.device_id.encode())


def command_json(record: CommandRecord) -> dict[str, Any]:
    """A stored command as `--json` and the API show it."""
    return {
        "request_id": record.request_id,
        "device_id": record.device_id,
        "command": record.name,
        "params": _params(record.body),
        "status": str(record.status),
        "reason": record.reason,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "sent_at": record.sent_at,
    }


def _params(body: str) -> Any:
    try:
        return json.loads(body).get("params")
    except (ValueError, AttributeError):
        return None
