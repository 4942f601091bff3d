"""Bearer tokens: who calls, and whether their scope is enough.

No token, an unknown one or a revoked one: 401 with `WWW-Authenticate: Bearer`. A token
whose scope is short of what the route needs: 403.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from preservarium.api_access import Scope
from preservarium.errors import PreservariumError
from preservarium.repositories import SQLTokenRepository

from preservarium_gateway.api.problems import Problem

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="preservarium"'}
# auto_error=False: the 401 is ours, a problem document with the challenge.
_bearer = HTTPBearer(auto_error=False, description="A token from `preservarium token create`.")


@dataclass(frozen=True, slots=True)
class Caller:
    """The token a request came with."""

    name: str
    scope: Scope


def _unauthorized(detail: str) -> Problem:
    return Problem(401, "unauthorized", detail, headers=CHALLENGE)


async def _caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    if credentials is None:
        raise _unauthorized("send Authorization: Bearer TOKEN (preservarium token create)")
    engine = request.app.state.context.engine
    record = await SQLTokenRepository(engine).authenticate(credentials.credentials)
    if record is None:
        raise _unauthorized("the token is unknown or revoked")
    caller = Caller(record.name, record.scope)
    request.state.caller = caller  # the audit log names it
    return caller


async def still_active(request: Request) -> bool:
    """Whether the token this request came with is still active (a long request, such
    as a stream, asks again now and then). A database that does not answer is not a
    revocation: True then."""
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret:
        return False
    try:
        record = await SQLTokenRepository(request.app.state.context.engine).authenticate(secret)
    except PreservariumError:
        return True
    return record is not None


def require(scope: Scope) -> Any:
    """A dependency that lets through tokens of `scope` or above."""

    async def check(caller: Annotated[Caller, Depends(_caller)]) -> Caller:
        if not caller.scope.allows(scope):
            raise Problem(403, "forbidden",
                          f"this needs a token of scope {scope.value}; {caller.name!r} has "
                          f"{caller.scope.value}")  # fmt: skip
        return caller

    return Depends(check)


READ = require(Scope.READ)
WRITE = require(Scope.WRITE)
ADMIN = require(Scope.ADMIN)
