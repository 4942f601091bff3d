"""Every route needs a token (401 without, with the Bearer challenge) and enough scope
(403), over the real uvicorn listener; /healthz needs none."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from preservarium.api_access import Scope
from preservarium.repositories import SQLTokenRepository

from tests.api.conftest import Api

# (method, path, the scope it needs): every route under /api/v1.
ROUTES = [
    ("GET", "/api/v1/devices", "read"),
    ("POST", "/api/v1/devices", "write"),
    ("POST", "/api/v1/devices/import", "write"),
    ("GET", "/api/v1/devices/d1", "read"),
    ("PATCH", "/api/v1/devices/d1", "write"),
    ("DELETE", "/api/v1/devices/d1", "write"),
    ("GET", "/api/v1/parsers", "read"),
    ("GET", "/api/v1/parsers/t/versions", "read"),
    ("POST", "/api/v1/parsers/t/versions", "write"),
    ("GET", "/api/v1/parsers/t/versions/1", "read"),
    ("POST", "/api/v1/parsers/t/versions/1/activate", "write"),
    ("POST", "/api/v1/parsers/test", "write"),
    ("GET", "/api/v1/commands", "read"),
    ("POST", "/api/v1/commands", "write"),
    ("GET", "/api/v1/commands/r1", "read"),
    ("DELETE", "/api/v1/commands/r1", "write"),
    ("GET", "/api/v1/streams/raw", "read"),
    ("GET", "/api/v1/uplinks?type=t", "read"),
    ("GET", "/api/v1/replays", "read"),
    ("POST", "/api/v1/replays", "write"),
    ("GET", "/api/v1/replays/r1", "read"),
    ("GET", "/api/v1/audit", "admin"),
    ("GET", "/api/v1/token", "read"),
]
SHORT = {"write": "read", "admin": "write"}


def _template(path: str) -> str:
    return path.split("?")[0]


def test_the_table_covers_every_route(api: Api) -> None:
    app = api.app
    assert isinstance(app, FastAPI)
    served = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/api/v1")
        for method in operations
    }
    assert len(served) == len(ROUTES)
    for method, path, _ in ROUTES:
        assert any(m == method and _matches(t, _template(path)) for m, t in served), (
            f"{method} {path} is not served"
        )


def _matches(template: str, path: str) -> bool:
    parts, given = template.split("/"), path.split("/")
    return len(parts) == len(given) and all(
        p == g or (p.startswith("{") and p.endswith("}")) for p, g in zip(parts, given, strict=True)
    )


def _problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and {"type", "title", "detail"} <= body.keys()
    return dict(body)


async def test_no_token_is_401_with_the_challenge(live: httpx.AsyncClient) -> None:
    for method, path, _ in ROUTES:
        response = await live.request(method, path)
        _problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer"), (method, path)


async def test_an_unknown_or_malformed_token_is_401(live: httpx.AsyncClient) -> None:
    for header in ("Bearer pvr_nosuchtoken", "Basic dXNlcjpwYXNz", "Bearer"):
        response = await live.get("/api/v1/devices", headers={"Authorization": header})
        _problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_revoked_token_is_401(api: Api, live: httpx.AsyncClient) -> None:
    repository = SQLTokenRepository(api.context.engine)
    _, secret = await repository.create("soon-revoked", Scope.READ)
    assert (await live.get("/api/v1/devices", headers=_bearer(secret))).status_code == 200
    await repository.revoke("soon-revoked")
    _problem(await live.get("/api/v1/devices", headers=_bearer(secret)), 401)


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def test_a_short_scope_is_403(api: Api, live: httpx.AsyncClient) -> None:
    for method, path, scope in ROUTES:
        if scope == "read":
            continue
        response = await live.request(method, path, headers=api.auth(SHORT[scope]))
        body = _problem(response, 403)
        assert scope in str(body["detail"]), (method, path)


async def test_healthz_needs_no_token(live: httpx.AsyncClient) -> None:
    response = await live.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_bodies_are_bounded_before_anything_reads_them(
    api: Api, live: httpx.AsyncClient
) -> None:
    # The framework reads and decodes a JSON body before it checks the token: with no
    # bound, anyone could make the gateway hold and parse any number of megabytes.
    big = b'{"source": "' + b"#" * (3 * 1024 * 1024) + b'"}'
    json_type = {"content-type": "application/json"}

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    for headers, content in (
        (json_type, big),  # no token, Content-Length says it
        (json_type, chunks()),  # no token, chunked: counted as it comes
        ({**json_type, **api.auth("write")}, big),
    ):
        response = await live.post("/api/v1/parsers/test", content=content, headers=headers)
        assert response.status_code == 413, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["type"].endswith("/too-large")
    # An import file keeps its own, larger bound.
    rows = b"id,type\n" + b"".join(b"dev-%07d,thermo\n" % n for n in range(150_000))
    assert len(rows) > 2 * 1024 * 1024
    csv = {**api.auth("write"), "content-type": "text/csv"}
    response = await live.post("/api/v1/devices/import?dry_run=true", content=rows, headers=csv)
    assert response.status_code == 422, response.text  # over 100,000 rows, read in full
