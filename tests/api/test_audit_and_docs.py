"""The audit log of writes (admin only), the metrics and request ids of every request,
and the OpenAPI document and offline docs page."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import pathlib
import re

import httpx
from preservarium.repositories import SQLParserRepository
from preservarium_gateway.api import create_app
from sqlalchemy.ext.asyncio import create_async_engine

from tests.api.conftest import Api

SOURCE = "def parse(payload, metadata):\n    return {}\n"


async def test_writes_are_audited_and_paged_for_admins(api: Api, client: httpx.AsyncClient) -> None:
    await SQLParserRepository(api.context.engine).upload("thermo", SOURCE)
    write = api.auth("write")
    await client.post("/api/v1/devices", json={"id": "a-1", "type": "thermo"}, headers=write)
    await client.post("/api/v1/devices", json={"id": "a-1", "type": "thermo"}, headers=write)
    await client.delete("/api/v1/devices/a-1", headers=write)
    await client.get("/api/v1/devices", headers=write)  # a read: not audited
    await client.delete("/api/v1/devices/a-1", headers=api.auth("read"))  # refused: audited
    await client.delete("/api/v1/devices/a-1")  # anonymous: not audited
    admin = api.auth("admin")
    first = (await client.get("/api/v1/audit", params={"limit": 2}, headers=admin)).json()
    rest = (await client.get("/api/v1/audit", params={"before": first["next_before"]},
                             headers=admin)).json()  # fmt: skip
    assert "items" in rest, (first, rest)
    entries = first["items"] + rest["items"]
    assert rest["next_before"] is None
    assert [(e["method"], e["status"]) for e in entries] == [
        ("DELETE", 403), ("DELETE", 204), ("POST", 409), ("POST", 201),
    ]  # fmt: skip
    created = entries[-1]
    assert created["route"] == "/api/v1/devices" and created["token_name"].startswith("write-")
    assert created["detail"]["device_id"] == "a-1" and created["detail"]["request_id"]
    assert entries[1]["route"] == "/api/v1/devices/{device_id}" and entries[1]["target"] == "a-1"
    assert entries[0]["token_name"].startswith("read-")
    refused = await client.get("/api/v1/audit", headers=write)
    assert refused.status_code == 403


async def test_requests_are_counted_by_route_template(api: Api, client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/devices/some-device", headers=api.auth("read"),
                                params={"x": 1})  # fmt: skip
    assert response.status_code == 404 and response.headers["x-request-id"]
    mine = await client.get("/healthz", headers={"x-request-id": "trace-42"})
    assert mine.headers["x-request-id"] == "trace-42"
    registry = api.context.metrics.registry
    labels = {"route": "/api/v1/devices/{device_id}", "method": "GET", "status": "404"}
    assert registry.get_sample_value("preservarium_gateway_api_requests_total", labels) == 1
    assert (
        registry.get_sample_value(
            "preservarium_gateway_api_request_seconds_count",
            {"route": "/api/v1/devices/{device_id}", "method": "GET"},
        )
        == 1
    )


async def test_openapi_and_offline_docs(client: httpx.AsyncClient) -> None:
    document = (await client.get("/api/openapi.json")).json()
    assert "/api/v1/devices/{device_id}" in document["paths"]
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    page = await client.get("/api/docs")
    assert page.status_code == 200
    html = page.text
    assert "swagger-ui-bundle.js" in html
    # Nothing is fetched from another host: every reference is a path on this server.
    references = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", html)
    assert references and all(
        ref.startswith("/") and not ref.startswith("//") for ref in references
    )
    assert "http://" not in html and "https://" not in html
    for ref in references:
        if ref.startswith("/api/docs/assets/"):
            assert (await client.get(ref)).status_code == 200, ref
    # Its one inline script runs by its hash; no other inline script could.
    (script,) = re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    policy = page.headers["content-security-policy"]
    assert f"script-src 'self' 'sha256-{digest}'" in policy
    assert "frame-ancestors 'none'" in policy and "unsafe-eval" not in policy


async def test_every_response_carries_the_security_headers(
    api: Api, client: httpx.AsyncClient
) -> None:
    for response in (
        await client.get("/api/v1/devices", headers=api.auth("read")),
        await client.get("/api/v1/devices"),  # a 401 problem document too
        await client.get("/signin"),
    ):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        policy = response.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy


async def test_an_audit_cursor_out_of_range_is_422(api: Api, client: httpx.AsyncClient) -> None:
    # The cursor went to the database as it came: 2**64 overflowed it (a 500).
    for before in (str(2**64), "-1"):
        response = await client.get("/api/v1/audit", params={"before": before},
                                    headers=api.auth("admin"))  # fmt: skip
        assert response.status_code == 422, response.text
        assert response.json()["type"].endswith("/invalid-input")


async def test_a_database_failure_is_a_503_that_shows_no_sql(
    api: Api, tmp_path: pathlib.Path
) -> None:
    # The problem's detail was the SQLAlchemy error as text: the statement, its
    # parameters (the token's digest) and a link to SQLAlchemy's site, for anyone to read.
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")  # no tables
    context = dataclasses.replace(api.context, engine=engine)
    transport = httpx.ASGITransport(app=create_app(context, console=False))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            response = await client.get("/api/v1/devices", headers=api.auth("read"))
    finally:
        await engine.dispose()
    assert response.status_code == 503, response.text
    assert response.json()["type"].endswith("/database-unavailable")
    detail = response.json()["detail"]
    for internal in ("SELECT", "api_tokens", "[parameters", "sqlalche.me", "[SQL"):
        assert internal not in detail, detail
