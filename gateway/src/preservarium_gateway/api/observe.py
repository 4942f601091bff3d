"""Every request observed once: a request id, metrics by route template, one structured
access-log line, and, for writes, an entry in the audit log."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from preservarium.repositories import SQLAuditRepository
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from preservarium_gateway.api.templates import Match, RouteTemplates
from preservarium_gateway.metrics import GatewayMetrics

log = logging.getLogger("preservarium.gateway.api.access")
WRITES = frozenset({"POST", "PATCH", "PUT", "DELETE"})
REQUEST_ID = "x-request-id"
MAX_REQUEST_ID = 64


class ObservedRequests:
    """ASGI middleware: request id, metrics, access log, audit of writes."""

    def __init__(
        self, app: ASGIApp, *, metrics: GatewayMetrics, audit: SQLAuditRepository,
        templates: RouteTemplates,
    ) -> None:  # fmt: skip
        self._app = app
        self._metrics = metrics
        self._audit = audit
        self._templates = templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = time.perf_counter()

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID.encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self._app(scope, receive, observed_send)
        finally:
            await self._observe(scope, request_id, status, time.perf_counter() - started)

    async def _observe(self, scope: Scope, request_id: str, status: int, seconds: float) -> None:
        matched = self._templates.match(scope["path"])
        route = matched.template
        method = scope["method"]
        self._metrics.api_requests.labels(route, method, str(status)).inc()
        self._metrics.api_latency.labels(route, method).observe(seconds)
        state: dict[str, Any] = scope.get("state", {})
        caller = state.get("caller")
        log.info("api request", extra={
            "request_id": request_id, "method": method, "route": route,
            "path": scope["path"], "status": status, "ms": round(seconds * 1000, 3),
            "token": getattr(caller, "name", None),
        })  # fmt: skip
        # Writes by a known token are audited, refused ones too; anonymous ones are not
        # (anyone could fill the table), they are in the access log.
        if method in WRITES and route.startswith("/api/") and caller is not None:
            await self._record(scope, state, matched, status, caller.name)

    async def _record(
        self, scope: Scope, state: dict[str, Any], matched: Match, status: int, token: str
    ) -> None:
        route = matched.template
        target = "/".join(matched.params.values()) or None
        detail = {"request_id": state["request_id"], **state.get("audit_detail", {})}
        try:
            await self._audit.add(token_name=token, method=scope["method"], route=route,
                                  target=target, status=status, detail=detail)  # fmt: skip
        except Exception:
            log.exception("audit entry not written", extra={"route": route, "token": token})
            self._metrics.api_audit_failures.inc()


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID.encode():
            text: str = value.decode("latin-1")
            if 0 < len(text) <= MAX_REQUEST_ID and text.isprintable():
                return text
    return uuid.uuid4().hex


def note(state: Any, **detail: Any) -> None:
    """Add small facts about a write to its audit entry (request.state)."""
    current = getattr(state, "audit_detail", {})
    state.audit_detail = {**current, **detail}
