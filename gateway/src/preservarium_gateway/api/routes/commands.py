"""/api/v1/commands: send, list, show and cancel commands (the use cases of
`preservarium command ...`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from preservarium.repositories import SQLCommandRepository
from preservarium.repositories.commands import CommandStatus
from preservarium.usecases import commands as usecase
from preservarium.usecases.jsonable import json_object, jsonable
from pydantic import BaseModel, Field

from preservarium_gateway.api.auth import READ, WRITE
from preservarium_gateway.api.context import context_of
from preservarium_gateway.api.observe import note

router = APIRouter(prefix="/commands", tags=["commands"])
StatusName = Literal["queued", "claimed", "sent", "failed", "expired", "rejected"]


class NewCommand(BaseModel):
    """A command request, as `command send ID NAME --params JSON --ttl S` publishes it."""

    device_id: str
    command: str = Field(description="The command's name, for the parser's format_command.")
    params: dict[str, Any] = Field(default_factory=dict)
    ttl_s: int | None = Field(None, description="Expire after this long (default 86400).")
    request_id: str | None = Field(None, description="Your own id (default: a new UUID).")
    force: bool = Field(False, description="Send to a device that is not registered.")


@router.get("", dependencies=[READ], summary="List stored commands, newest first")
async def list_commands(
    request: Request,
    device: Annotated[str | None, Query(description="Only this device.")] = None,
    status: Annotated[StatusName | None, Query(description="Only this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """What the gateways queued, sent or ended."""
    statuses = () if status is None else (CommandStatus(status),)
    records = await SQLCommandRepository(context_of(request).engine).list_commands(
        device_id=device, statuses=statuses, limit=limit
    )
    return [jsonable(usecase.command_json(record)) for record in records]


@router.post("", status_code=202, dependencies=[WRITE], summary="Send a command")
async def send(request: Request, body: NewCommand) -> dict[str, Any]:
    """Publishes a `command.request` record, exactly as `command send`; the answer is that
    record. The gateway stores it (`queued`) and sends it on the device's next contact."""
    context = context_of(request)
    record = usecase.build_request(body.device_id, body.command, params=body.params,
                                   ttl_s=body.ttl_s, request_id=body.request_id)  # fmt: skip
    note(request.state, request_id=record["request_id"], device_id=body.device_id,
         command=body.command)  # fmt: skip
    if not body.force:
        await usecase.require_registered(context.engine, body.device_id)
    await usecase.send_command(context.publish, context.topics.command_request, record)
    return record


@router.get("/{request_id}", dependencies=[READ], summary="Show a command")
async def show(request: Request, request_id: str) -> dict[str, Any]:
    """One stored command and its status."""
    record = await SQLCommandRepository(context_of(request).engine).get(request_id)
    return json_object(usecase.command_json(record))


@router.delete("/{request_id}", dependencies=[WRITE], summary="Cancel a queued command")
async def cancel(request: Request, request_id: str) -> dict[str, Any]:
    """Marks it `expired` (reason `cancelled`) and publishes that status, as `command
    cancel`. 409 for a command being sent or ended; cancelling again publishes again."""
    context = context_of(request)
    record, now = await usecase.cancel_stored(context.engine, request_id)
    note(request.state, cancelled_now=now)
    await usecase.publish_cancelled(context.publish, context.topics.command_status, record)
    return json_object({**usecase.command_json(record), "cancelled_now": now})
