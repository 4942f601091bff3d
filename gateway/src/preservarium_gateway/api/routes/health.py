"""/healthz: no token; 200 while the API can read its database, 503 otherwise."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness and database reachability (no token needed)")
async def healthz(request: Request) -> JSONResponse:
    """`{"status": "ok"}`, or 503 with `{"status": "unavailable"}`."""
    engine = request.app.state.context.engine
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError):
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok"})
