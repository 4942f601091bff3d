"""Request bodies, bounded before anything reads them.

The framework reads and decodes a JSON body before a route's dependencies run, the
token check among them: without a bound, a client with no token could make the gateway
hold and parse any number of megabytes. A body whose Content-Length is over the bound is
refused at once; one sent in chunks is counted as it comes and refused at the chunk that
passes the bound. Either way the answer is a 413 problem document (`too-large`).
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from preservarium_gateway.api.problems import problem_response


class BodyTooLarge(HTTPException):
    """A body over its bound, met while it was read (the problem handlers answer it)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body is over {limit} bytes")


class BoundedBodies:
    """ASGI middleware: `default_max` bytes for any request body, or the bound `larger`
    gives the request's exact path."""

    def __init__(self, app: ASGIApp, *, default_max: int, larger: Mapping[str, int]) -> None:
        self._app = app
        self._default_max = default_max
        self._larger = dict(larger)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        limit = self._larger.get(scope["path"], self._default_max)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            response = problem_response(413, "too-large", f"the body is over {limit} bytes",
                                        headers={"Connection": "close"})  # fmt: skip
            await response(scope, receive, send)
            return
        received = 0

        async def bounded() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self._app(scope, bounded, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
