"""Device use cases: register, show, change, remove, list (CLI `device ...`, API /devices)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from preservarium.errors import NotFoundError
from preservarium.ids import is_device_id, is_device_type
from preservarium.usecases.errors import invalid

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from preservarium.identity import SecretBox
    from preservarium.identity.documents import CredentialDocument
    from preservarium.identity.kinds import AuthKind
    from preservarium.repositories import CommandRecord, CredentialSummary, DeviceRecord

PENDING_LIMIT = 100
ID_RULE = "use 1 to 64 characters of A-Z a-z 0-9 . _ : -"
TYPE_RULE = "use 1 to 64 characters of A-Z a-z 0-9 . _ -"


@dataclass(frozen=True, slots=True)
class DeviceView:
    """What `device show` and GET /devices/{id} show of a device."""

    device: DeviceRecord
    credentials: CredentialSummary
    pending: list[CommandRecord]
    last_command_sent_at: datetime | None
    # The last contact a gateway delivered (written by gateways in batches, ~10 s late).
    last_seen_at: datetime | None = None

    @property
    def last_contact_at(self) -> datetime | None:
        """The last contact the gateway recorded: the device last seen, or (for contacts
        from before last-seen times were kept) an authentication or a command sent."""
        seen = [t for t in (self.last_seen_at, self.credentials.last_authenticated_at,
                            self.last_command_sent_at) if t is not None]  # fmt: skip
        return max(seen) if seen else None


def check_device_id(device_id: str, *, exit_code: int = 1) -> None:
    """InvalidInputError unless `device_id` is a valid device id."""
    if not is_device_id(device_id):
        raise invalid("id", f"invalid device id {device_id!r}: {ID_RULE}", exit_code=exit_code)


def check_device_type(device_type: str, *, exit_code: int = 1) -> None:
    """InvalidInputError unless `device_type` is a valid device type."""
    if not is_device_type(device_type):
        message = f"invalid device type {device_type!r}: {TYPE_RULE}"
        raise invalid("type", message, exit_code=exit_code)


def check_auth(device_id: str, auth: AuthKind, secrets: SecretBox) -> None:
    """Refuse, before anything is stored, credentials that cannot be issued."""
    from preservarium.identity.kinds import DTLS_PSK_IDENTITY_MAX_BYTES, AuthKind

    if auth.has_secret_at_rest and not secrets.has_key:
        message = f"PRESERVARIUM_SECRET_KEY is not set: {auth.value} credentials cannot be stored"
        raise invalid("auth", message, exit_code=1)
    if auth is AuthKind.PSK and len(device_id.encode()) > DTLS_PSK_IDENTITY_MAX_BYTES:
        raise invalid(
            "auth",
            f"device id {device_id!r} is longer than the {DTLS_PSK_IDENTITY_MAX_BYTES} bytes "
            "a DTLS PSK identity may have: use --auth token or oscore",
            exit_code=1,
        )


async def require_parser(engine: AsyncEngine, device_type: str) -> None:
    """NotFoundError, saying what to do, when `device_type` has no active parser: the
    gateway would answer its device 4.04 and parse nothing."""
    from preservarium.repositories import SQLParserRepository

    try:
        await SQLParserRepository(engine).get_parser_for_sensor(device_type)
    except NotFoundError:
        raise NotFoundError(
            f"device type {device_type!r} has no active parser: upload one first "
            f"(preservarium parser upload {device_type} FILE), or pass --force"
        ) from None


async def register_device(
    engine: AsyncEngine,
    secrets: SecretBox,
    *,
    device_id: str,
    device_type: str,
    auth: AuthKind,
    attributes: dict[str, Any],
    force: bool = False,
) -> tuple[DeviceRecord, CredentialDocument]:
    """Register a device with fresh credentials of kind `auth`: all or nothing."""
    from preservarium.repositories import SQLCredentialRepository, SQLDeviceRepository

    check_device_id(device_id)
    check_device_type(device_type)
    check_auth(device_id, auth, secrets)
    if not force:
        await require_parser(engine, device_type)
    devices = SQLDeviceRepository(engine)
    record = await devices.register(device_id, device_type, attributes=attributes)
    try:
        document = await SQLCredentialRepository(engine, secrets=secrets).set_credentials(
            device_id, auth
        )
    except Exception:
        await devices.remove(device_id)  # no device without its kind
        raise
    return record, document


async def show_device(engine: AsyncEngine, secrets: SecretBox, device_id: str) -> DeviceView:
    """One device, how it authenticates (never the secret) and its waiting commands."""
    from preservarium.repositories import (
        SQLCommandRepository,
        SQLCredentialRepository,
        SQLDeviceActivityRepository,
        SQLDeviceRepository,
    )
    from preservarium.repositories.commands import CommandStatus

    record = await SQLDeviceRepository(engine).get(device_id)
    activity = await SQLDeviceActivityRepository(engine).activity([device_id])
    summary = await SQLCredentialRepository(engine, secrets=secrets).summary(device_id)
    commands = SQLCommandRepository(engine)
    pending = await commands.list_commands(
        device_id=device_id,
        statuses=(CommandStatus.QUEUED, CommandStatus.CLAIMED),
        limit=PENDING_LIMIT,
    )
    sent = await commands.list_commands(
        device_id=device_id, statuses=(CommandStatus.SENT,), limit=1
    )
    return DeviceView(record, summary, pending, sent[0].sent_at if sent else None,
                      activity[device_id].last_seen_at)  # fmt: skip


async def update_device(
    engine: AsyncEngine,
    *,
    device_id: str,
    device_type: str | None = None,
    attributes: dict[str, Any] | None = None,
    set_attributes: dict[str, Any] | None = None,
    unset_attributes: tuple[str, ...] = (),
    force: bool = False,
) -> DeviceRecord:
    """Change a registered device's type and/or its attributes: `attributes` replaces them
    all; otherwise `unset_attributes` are dropped and `set_attributes` set. The attributes
    are checked (and changed) first: a refused change leaves the type alone. Parsers see
    the change within seconds (the registry revision moves)."""
    from preservarium.repositories import SQLDeviceRepository

    if device_type is not None:
        check_device_type(device_type)
        if not force:
            await require_parser(engine, device_type)
    devices = SQLDeviceRepository(engine)
    record: DeviceRecord | None = None
    if attributes is not None or set_attributes or unset_attributes:
        record = await devices.update_attributes(
            device_id,
            set_=attributes if attributes is not None else set_attributes,
            unset=unset_attributes,
            replace=attributes is not None,
        )
    if device_type is not None:
        record = await devices.change_type(device_id, device_type)
    return record if record is not None else await devices.get(device_id)


def device_json(record: DeviceRecord) -> dict[str, Any]:
    """A device as `--json` and the API show it."""
    return {
        "id": record.id,
        "device_type": record.device_type,
        "created_at": record.created_at,
        "attributes": record.attributes,
    }


async def list_items(engine: AsyncEngine, records: list[DeviceRecord]) -> list[dict[str, Any]]:
    """A page of the device list: each device with its auth kind, last contact and
    number of pending commands (so that a list needs no request per device)."""
    from preservarium.repositories import SQLDeviceActivityRepository

    activity = await SQLDeviceActivityRepository(engine).activity([r.id for r in records])
    return [
        {
            **device_json(record),
            "auth": activity[record.id].auth,
            "last_contact_at": activity[record.id].last_contact_at,
            "pending_commands": activity[record.id].pending_commands,
        }
        for record in records
    ]


def credentials_json(summary: CredentialSummary) -> dict[str, Any]:
    """What may be shown of a device's credentials: kind and times, never a secret."""
    return {
        "auth": summary.auth.value,
        "credentials_created_at": summary.created_at,
        "last_authenticated_at": summary.last_authenticated_at,
    }


def view_json(view: DeviceView) -> dict[str, Any]:
    """`device show --json`, and GET /api/v1/devices/{id}: the same document."""
    from preservarium.usecases.commands import command_json

    return {
        **device_json(view.device),
        **credentials_json(view.credentials),
        "last_seen_at": view.last_seen_at,
        "last_contact_at": view.last_contact_at,
        "pending_commands": [command_json(command) for command in view.pending],
    }
