"""/api/v1/devices: the device registry (the use cases of `preservarium device ...`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from preservarium.identity.kinds import AuthKind
from preservarium.repositories import SQLDeviceRepository
from preservarium.repositories.devices import DeviceFilter
from preservarium.usecases import devices as usecase
from preservarium.usecases.device_import import import_devices
from preservarium.usecases.import_rows import ImportFormat
from preservarium.usecases.jsonable import json_object
from pydantic import BaseModel, Field

from preservarium_gateway.api.auth import READ, WRITE
from preservarium_gateway.api.context import context_of
from preservarium_gateway.api.observe import note
from preservarium_gateway.api.problems import Problem

router = APIRouter(prefix="/devices", tags=["devices"])
AuthName = Literal["none", "token", "psk", "oscore"]


class NewDevice(BaseModel):
    """A device to register (as `device register ID --type T --auth A --attr k=v`)."""

    id: str = Field(description="1 to 64 characters of A-Z a-z 0-9 . _ : -")
    type: str = Field(description="The device type: names the parser.")
    auth: AuthName = "none"
    attributes: dict[str, Any] = Field(default_factory=dict)
    force: bool = Field(False, description="Accept a type without an active parser.")


class DeviceChanges(BaseModel):
    """What to change: the type, and/or the attributes (replaced as a whole)."""

    type: str | None = None
    attributes: dict[str, Any] | None = None
    force: bool = Field(False, description="Accept a type without an active parser.")


@router.get("", dependencies=[READ], summary="List devices (filters, cursor paging)")
async def list_devices(
    request: Request,
    type: Annotated[str | None, Query(description="Only this device type.")] = None,
    q: Annotated[str | None, Query(max_length=64, description="Id contains (any case).")] = None,
    auth: Annotated[AuthName | None, Query(description="Only this auth kind.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> dict[str, Any]:
    """Devices by id, each with its auth kind, last contact and number of pending
    commands; `next_cursor` is set while more follow."""
    context = context_of(request)
    where = DeviceFilter(device_type=type, q=q, auth=auth)
    records = await SQLDeviceRepository(context.engine).search(where, limit=limit + 1,
                                                               after=cursor)  # fmt: skip
    page = records[:limit]
    more = len(records) > limit
    items = await usecase.list_items(context.engine, page)
    return json_object({"items": items,
                     "next_cursor": page[-1].id if more and page else None})  # fmt: skip


@router.post("", status_code=201, dependencies=[WRITE], summary="Register a device")
async def register(request: Request, body: NewDevice) -> dict[str, Any]:
    """The device and its generated credentials: shown in this answer only."""
    context = context_of(request)
    note(request.state, device_id=body.id, type=body.type, auth=body.auth)
    record, document = await usecase.register_device(
        context.engine, context.secrets, device_id=body.id, device_type=body.type,
        auth=AuthKind(body.auth), attributes=body.attributes, force=body.force,
    )  # fmt: skip
    return json_object({**usecase.device_json(record), **document.to_json()})


@router.post(
    "/import",
    dependencies=[WRITE],
    summary="Import devices from CSV, JSON or YAML (all or nothing)",
    openapi_extra={"requestBody": {"required": True, "content": {
        "text/csv": {"schema": {"type": "string"}},
        "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
        "application/yaml": {"schema": {"type": "string"}},
    }}},
)  # fmt: skip
async def import_file(
    request: Request,
    format: Annotated[ImportFormat | None, Query(description="Default: the Content-Type.")] = None,
    dry_run: bool = False,
    force: bool = False,
) -> dict[str, Any]:
    """The file is the body. Every row is checked first: one bad row and nothing is
    written (422, each bad row in `errors`). Credentials issued appear in this answer only."""
    context = context_of(request)
    fmt = format or ImportFormat.guess(request.headers.get("content-type", ""))
    if fmt is None:
        detail = "send text/csv, application/json or application/yaml, or ?format="
        raise Problem(415, "unsupported-media-type", detail)
    data = await _body(request, context.limits.import_max_bytes)
    result = await import_devices(context.engine, context.secrets, data, fmt,
                                  dry_run=dry_run, force=force)  # fmt: skip
    report = result.to_json()
    note(request.state, dry_run=dry_run, **{k: report[k] for k in ("created", "updated",
                                                                     "unchanged")})  # fmt: skip
    return json_object(report)


async def _body(request: Request, limit: int) -> bytes:
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise Problem(413, "too-large", f"the body is over {limit} bytes")
    return bytes(data)


@router.get("/{device_id}", dependencies=[READ], summary="Show a device")
async def show(request: Request, device_id: str) -> dict[str, Any]:
    """The device, its auth kind (never a secret), last contact and pending commands."""
    context = context_of(request)
    view = await usecase.show_device(context.engine, context.secrets, device_id)
    return json_object(usecase.view_json(view))


@router.patch("/{device_id}", dependencies=[WRITE], summary="Change type or attributes")
async def change(request: Request, device_id: str, body: DeviceChanges) -> dict[str, Any]:
    """The device as it now is."""
    context = context_of(request)
    note(request.state, **body.model_dump(exclude_unset=True, exclude={"attributes"}))
    record = await usecase.update_device(context.engine, device_id=device_id,
                                         device_type=body.type, attributes=body.attributes,
                                         force=body.force)  # fmt: skip
    return json_object(usecase.device_json(record))


@router.delete("/{device_id}", status_code=204, dependencies=[WRITE], summary="Remove a device")
async def remove(request: Request, device_id: str) -> None:
    """Forget the device (its credentials with it)."""
    await SQLDeviceRepository(context_of(request).engine).remove(device_id)
