"""`preservarium device import` and POST /api/v1/devices/import: many devices from a file.

The whole file is read and checked first, against the database too (a type without an
active parser, credentials that cannot be stored); nothing is written when any row is
wrong. Then the devices are written in one transaction, and the new credentials issued.
Importing the same file again changes nothing: every row is `unchanged`.

A row names what it sets: `auth` and `attributes` left out keep a registered device's
own. A row whose `auth` differs from the device's kind gives it new credentials.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from preservarium.identity.kinds import AuthKind
from preservarium.repositories.devices import DeviceChange
from preservarium.usecases.errors import FieldError, InvalidInputError
from preservarium.usecases.import_rows import ImportFormat, ImportRow, RowError, read_rows

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from preservarium.identity import SecretBox
    from preservarium.repositories import DeviceRecord

# Called with (rows done, rows in all) as credentials are issued.
Progress = Callable[[int, int], None]


class Outcome(StrEnum):
    """What an import does (or, dry, would do) to one row's device."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True, slots=True)
class PlannedRow:
    """A row and what importing it does."""

    row: ImportRow
    outcome: Outcome
    new_credentials: AuthKind | None  # issue credentials of this kind


@dataclass(slots=True)
class ImportResult:
    """The report of an import: counts, each device's outcome, the credentials issued."""

    dry_run: bool
    rows: list[PlannedRow]
    credentials: list[dict[str, Any]] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        """How many rows have `outcome`."""
        return sum(1 for planned in self.rows if planned.outcome is outcome)

    def to_json(self) -> dict[str, Any]:
        """The report as `--json` and the API give it (credentials appear only here)."""
        return {
            "dry_run": self.dry_run,
            **{outcome.value: self.count(outcome) for outcome in Outcome},
            "devices": [{"id": p.row.device_id, "outcome": p.outcome.value} for p in self.rows],
            "credentials": self.credentials,
        }


async def import_devices(
    engine: AsyncEngine,
    secrets: SecretBox,
    data: bytes,
    fmt: ImportFormat,
    *,
    dry_run: bool = False,
    force: bool = False,
    progress: Progress | None = None,
) -> ImportResult:
    """Check every row, then (unless `dry_run`) write them all; InvalidInputError listing
    each bad row, with nothing written, otherwise."""
    # Reading a large file takes seconds (YAML most): off the event loop, which serves
    # the gateway's contacts when the API runs there.
    rows, errors = await asyncio.to_thread(read_rows, data, fmt)
    planned = await plan(engine, secrets, rows, force=force, errors=errors)
    result = ImportResult(dry_run=dry_run, rows=planned)
    if not dry_run:
        result.credentials = await _apply(engine, secrets, planned, progress or _silent)
    return result


def _silent(done: int, total: int) -> None:
    """No progress to show."""


async def plan(
    engine: AsyncEngine,
    secrets: SecretBox,
    rows: Sequence[ImportRow],
    *,
    force: bool,
    errors: Sequence[RowError] = (),
) -> list[PlannedRow]:
    """What importing `rows` does; InvalidInputError listing each row that cannot be
    imported, with `errors` (the rows that could not be read), in the file's order."""
    from preservarium.repositories import (
        SQLCredentialRepository,
        SQLDeviceRepository,
        SQLParserRepository,
    )

    current = {record.id: record for record in await SQLDeviceRepository(engine).list()}
    kinds = {
        device_id: entry.auth
        for device_id, entry in (
            await SQLCredentialRepository(engine, secrets=secrets).auth_entries()
        ).items()
    }
    active = {item.device_type for item in await SQLParserRepository(engine).list_parsers()
              if item.active_version is not None}  # fmt: skip
    planned: list[PlannedRow] = []
    refused: list[tuple[int, FieldError]] = [(error.index, error.error) for error in errors]
    for row in rows:
        problem = _problem(row, active, secrets, force=force)
        if problem is not None:
            refused.append((row.index, FieldError(row.where, problem)))
            continue
        planned.append(_plan_row(row, current.get(row.device_id), kinds))
    if refused:
        total = len(rows) + len(errors)
        raise InvalidInputError(
            f"{len(refused)} of {total} rows cannot be imported; nothing was imported",
            errors=[error for _, error in sorted(refused, key=lambda item: item[0])],
            exit_code=1,
        )
    return planned


def _problem(row: ImportRow, active: set[str], secrets: SecretBox, *, force: bool) -> str | None:
    from preservarium.identity.kinds import DTLS_PSK_IDENTITY_MAX_BYTES

    if not force and row.device_type not in active:
        return f"type {row.device_type!r} has no active parser (upload one, or use force)"
    if row.auth is not None and row.auth.has_secret_at_rest and not secrets.has_key:
        return f"PRESERVARIUM_SECRET_KEY is not set: {row.auth.value} credentials cannot be stored"
    too_long = len(row.device_id.encode()) > DTLS_PSK_IDENTITY_MAX_BYTES
    if row.auth is AuthKind.PSK and too_long:
        return f"id is longer than the {DTLS_PSK_IDENTITY_MAX_BYTES} bytes of a PSK identity"
    return None


def _plan_row(
    row: ImportRow, device: DeviceRecord | None, kinds: dict[str, AuthKind]
) -> PlannedRow:
    if device is None:
        wanted = row.auth or AuthKind.NONE
        return PlannedRow(row, Outcome.CREATED, None if wanted is AuthKind.NONE else wanted)
    current_auth = kinds.get(row.device_id, AuthKind.NONE)
    issue = row.auth if row.auth is not None and row.auth is not current_auth else None
    same_type = device.device_type == row.device_type
    same_attributes = row.attributes is None or row.attributes == device.attributes
    changed = not same_type or not same_attributes or issue is not None
    return PlannedRow(row, Outcome.UPDATED if changed else Outcome.UNCHANGED, issue)


async def _apply(
    engine: AsyncEngine, secrets: SecretBox, planned: list[PlannedRow], progress: Progress
) -> list[dict[str, Any]]:
    from preservarium.repositories import SQLCredentialRepository, SQLDeviceRepository

    devices = SQLDeviceRepository(engine)
    created = [p for p in planned if p.outcome is Outcome.CREATED]
    updated = [p for p in planned if p.outcome is Outcome.UPDATED]
    await devices.apply(create=[_change(p.row) for p in created],
                        change=[_change(p.row) for p in updated])  # fmt: skip
    repository = SQLCredentialRepository(engine, secrets=secrets)
    issued: list[dict[str, Any]] = []
    to_issue = [(p.row.device_id, p.new_credentials) for p in planned if p.new_credentials]
    try:
        for done, (device_id, kind) in enumerate(to_issue, start=1):
            document = await repository.set_credentials(device_id, kind)
            issued.append(document.to_json())
            progress(done, len(to_issue))
    except Exception:
        # No new device without its credentials: take the created ones back out.
        for item in created:
            await devices.remove(item.row.device_id)
        raise
    return issued


def _change(row: ImportRow) -> DeviceChange:
    return DeviceChange(row.device_id, row.device_type, row.attributes)
