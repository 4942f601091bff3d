"""/api/v1/token: the token a request carries, as the API knows it (the console asks on
sign-in, to show its name and to disable what its scope does not allow)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from preservarium_gateway.api.auth import READ, Caller

router = APIRouter(tags=["token"])


@router.get("/token", dependencies=[READ], summary="The calling token's name and scope")
async def show(request: Request) -> dict[str, Any]:
    """`{"name", "scope"}` of the token sent; 401 like every route when there is none."""
    who: Caller = request.state.caller
    return {"name": who.name, "scope": who.scope.value}
