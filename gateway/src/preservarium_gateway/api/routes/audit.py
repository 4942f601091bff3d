"""/api/v1/audit: the log of writes through the API, for admin tokens."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from preservarium.repositories import SQLAuditRepository
from preservarium.usecases.jsonable import json_object

from preservarium_gateway.api.auth import ADMIN
from preservarium_gateway.api.context import ApiContext
from preservarium_gateway.api.params import AuditCursor

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("", dependencies=[ADMIN], summary="Page the audit log, newest first")
async def page(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: AuditCursor = None,
) -> dict[str, Any]:
    """Entries (who, method, route, target, status, when, detail); `next_before` pages on."""
    context: ApiContext = request.app.state.context
    entries = await SQLAuditRepository(context.engine).page(limit=limit + 1, before=before)
    shown = entries[:limit]
    more = len(entries) > limit
    return json_object({"items": shown, "next_before": shown[-1].id if more and shown else None})
