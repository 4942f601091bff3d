"""RFC 9457 problem documents: every error of the API leaves as one, at this boundary.

Handlers raise the SDK's errors (NotFoundError, ConflictError, InvalidInputError, ...) or
`Problem`; the handlers installed here turn each into `application/problem+json`.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from preservarium.attributes import InvalidAttributesError
from preservarium.errors import (
    ConflictError,
    CredentialError,
    DatabaseUnavailableError,
    InvalidParserSourceError,
    NotFoundError,
    PreservariumError,
    SecretKeyError,
)
from preservarium.examples import ExamplesError
from preservarium.sandbox_client import SandboxRequestError, SandboxUnavailableError
from preservarium.usecases.errors import InvalidInputError
from starlette.exceptions import HTTPException as StarletteHTTPException

from preservarium_gateway.errors import PublishError

MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://preservarium.invalid/problems/"  # a name, never fetched
log = logging.getLogger("preservarium.gateway.api")
DATABASE_UNAVAILABLE = "the database is unavailable; try again later (the gateway's log says why)"


class Problem(Exception):
    """An error to answer with: its status, a short kind, a detail, more members."""

    def __init__(
        self, status: int, kind: str, detail: str, *, headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:  # fmt: skip
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.headers = headers
        self.extra = extra


def problem_response(
    status: int, kind: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """A problem document response."""
    body = {"type": TYPE_BASE + kind, "title": HTTPStatus(status).phrase, "status": status,
            "detail": detail, **extra}  # fmt: skip
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


# The SDK's errors by what they mean to a client: (status, kind). First match wins.
_MAPPED: tuple[tuple[type[Exception], int, str], ...] = (
    (NotFoundError, 404, "not-found"),
    (ConflictError, 409, "conflict"),
    (InvalidParserSourceError, 422, "invalid-parser"),
    (ExamplesError, 422, "invalid-examples"),
    (InvalidAttributesError, 422, "invalid-attributes"),
    (CredentialError, 422, "invalid-credentials"),
    (SecretKeyError, 422, "secret-key"),
    (SandboxRequestError, 422, "sandbox-refused"),
    (SandboxUnavailableError, 503, "sandbox-unavailable"),
    (PublishError, 503, "kafka-unavailable"),
)


def _from_sdk(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, InvalidInputError):
        errors = [{"field": e.field, "message": e.message} for e in exc.errors]
        return problem_response(422, "invalid-input", str(exc), errors=errors)
    if isinstance(exc, DatabaseUnavailableError):
        # The driver's text names tables and statements: the log has it, the client not.
        log.warning("database unavailable", extra={"path": request.url.path, "error": str(exc)})
        return problem_response(503, "database-unavailable", DATABASE_UNAVAILABLE)
    for kind_of, status, kind in _MAPPED:
        if isinstance(exc, kind_of):
            line = getattr(exc, "line", None)
            extra = {"line": line} if line is not None else {}
            return problem_response(status, kind, " ".join(str(exc).split()), **extra)
    log.error("request failed", exc_info=exc, extra={"path": request.url.path})
    return problem_response(500, "internal", "the request failed; see the gateway's log")


def _from_problem(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, Problem):  # registered for Problem only
        raise exc
    return problem_response(exc.status, exc.kind, exc.detail, headers=exc.headers, **exc.extra)


def _from_http(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, StarletteHTTPException):  # registered for it only
        raise exc
    kinds = {404: "not-found", 405: "method-not-allowed", 401: "unauthorized", 413: "too-large"}
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route {request.method} {request.url.path}"
    if exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    kind = kinds.get(exc.status_code, HTTPStatus(exc.status_code).phrase.lower().replace(" ", "-"))
    headers = dict(exc.headers) if exc.headers else None
    return problem_response(exc.status_code, kind, detail, headers=headers)


def _from_validation(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, RequestValidationError):  # registered for it only
        raise exc
    errors = [
        {"field": ".".join(str(part) for part in error.get("loc", ())), "message": error["msg"]}
        for error in exc.errors()
    ]
    return problem_response(422, "invalid-input", "the request is invalid", errors=errors)


def install(app: FastAPI) -> None:
    """Answer every error of `app` with a problem document."""
    app.add_exception_handler(Problem, _from_problem)
    app.add_exception_handler(StarletteHTTPException, _from_http)
    app.add_exception_handler(RequestValidationError, _from_validation)
    app.add_exception_handler(PreservariumError, _from_sdk)
    app.add_exception_handler(Exception, _from_sdk)  # a bug: 500, logged with its traceback
