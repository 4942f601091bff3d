"""/api/v1/devices on PostgreSQL and SQLite: the registry's behaviour, its problem
documents, and the same answers as `preservarium device ... --json`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from preservarium.repositories import (
    SQLCommandRepository,
    SQLDeviceActivityRepository,
    SQLParserRepository,
)

from tests.api.conftest import SECRET_KEY, Api
from tests.support.cli import run_cli

SOURCE = "def parse(payload, metadata):\n    return {'n': len(payload)}\n"


async def _parser(api: Api, device_type: str = "thermo") -> None:
    await SQLParserRepository(api.context.engine).upload(device_type, SOURCE)


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return dict(response.json())


async def test_register_returns_credentials_once_and_show_never(
    api: Api, client: httpx.AsyncClient
) -> None:
    await _parser(api)
    body = {"id": "dev-1", "type": "thermo", "auth": "token", "attributes": {"site": "a"}}
    response = await client.post("/api/v1/devices", json=body, headers=api.auth("write"))
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["id"] == "dev-1" and created["auth"] == "token" and created["token"]
    assert created["attributes"] == {"site": "a"}
    shown = (await client.get("/api/v1/devices/dev-1", headers=api.auth("read"))).json()
    assert created["token"] not in json.dumps(shown)
    assert shown["auth"] == "token" and shown["pending_commands"] == []
    assert shown["last_contact_at"] is None
    again = await client.post("/api/v1/devices", json=body, headers=api.auth("write"))
    _problem(again, 409)


async def test_a_type_without_a_parser_needs_force(api: Api, client: httpx.AsyncClient) -> None:
    body = {"id": "dev-2", "type": "noparser"}
    refused = _problem(
        await client.post("/api/v1/devices", json=body, headers=api.auth("write")), 404
    )
    assert "no active parser" in str(refused["detail"])
    forced = await client.post(
        "/api/v1/devices", json={**body, "force": True}, headers=api.auth("write")
    )
    assert forced.status_code == 201


async def test_show_lists_pending_commands(api: Api, client: httpx.AsyncClient) -> None:
    await _parser(api)
    await client.post(
        "/api/v1/devices", json={"id": "d", "type": "thermo"}, headers=api.auth("write")
    )
    await SQLCommandRepository(api.context.engine).add(
        request_id="r-1", device_id="d", name="reboot", body='{"params":{}}',
        expires_at=datetime.now(UTC) + timedelta(hours=1),
    )  # fmt: skip
    shown = (await client.get("/api/v1/devices/d", headers=api.auth("read"))).json()
    assert [c["request_id"] for c in shown["pending_commands"]] == ["r-1"]
    assert shown["pending_commands"][0]["status"] == "queued"


async def test_list_filters_and_pages(api: Api, client: httpx.AsyncClient) -> None:
    await _parser(api, "thermo")
    await _parser(api, "meter")
    for index in range(5):
        await client.post("/api/v1/devices", json={"id": f"t-{index}", "type": "thermo"},
                          headers=api.auth("write"))  # fmt: skip
    await client.post("/api/v1/devices", json={"id": "m-1", "type": "meter", "auth": "token"},
                      headers=api.auth("write"))  # fmt: skip
    read = api.auth("read")
    ids: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"type": "thermo", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/api/v1/devices", params=params, headers=read)).json()
        ids += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert ids == [f"t-{index}" for index in range(5)]
    by_auth = (await client.get("/api/v1/devices", params={"auth": "token"}, headers=read)).json()
    assert [item["id"] for item in by_auth["items"]] == ["m-1"]
    by_q = (await client.get("/api/v1/devices", params={"q": "T-3"}, headers=read)).json()
    assert [item["id"] for item in by_q["items"]] == ["t-3"]
    none = (await client.get("/api/v1/devices", params={"auth": "none", "type": "meter"},
                             headers=read)).json()  # fmt: skip
    assert none["items"] == []


async def test_list_items_carry_auth_last_contact_and_pending_count(
    api: Api, client: httpx.AsyncClient
) -> None:
    await _parser(api)
    for device_id, auth in (("a-seen", "none"), ("b-quiet", "token")):
        await client.post("/api/v1/devices", json={"id": device_id, "type": "thermo",
                          "auth": auth}, headers=api.auth("write"))  # fmt: skip
    seen = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    # What a gateway's flush writes for a device without credentials.
    await SQLDeviceActivityRepository(api.context.engine).record_seen({"a-seen": seen})
    for n in range(2):
        await SQLCommandRepository(api.context.engine).add(
            request_id=f"r-{n}", device_id="b-quiet", name="reboot", body='{"params":{}}',
            expires_at=datetime.now(UTC) + timedelta(hours=1),
        )  # fmt: skip
    read = api.auth("read")
    items = (await client.get("/api/v1/devices", headers=read)).json()["items"]
    by_id = {item["id"]: item for item in items}
    assert by_id["a-seen"]["last_contact_at"] == "2026-11-30T12:00:00Z"
    assert by_id["a-seen"]["pending_commands"] == 0 and by_id["a-seen"]["auth"] == "none"
    assert by_id["b-quiet"]["last_contact_at"] is None
    assert by_id["b-quiet"]["pending_commands"] == 2 and by_id["b-quiet"]["auth"] == "token"
    shown = (await client.get("/api/v1/devices/a-seen", headers=read)).json()
    assert shown["last_contact_at"] == shown["last_seen_at"] == "2026-11-30T12:00:00Z"


async def test_patch_and_delete(api: Api, client: httpx.AsyncClient) -> None:
    await _parser(api, "thermo")
    await _parser(api, "meter")
    write = api.auth("write")
    await client.post("/api/v1/devices", json={"id": "p", "type": "thermo"}, headers=write)
    changed = await client.patch("/api/v1/devices/p", json={"type": "meter",
                                 "attributes": {"floor": 2}}, headers=write)  # fmt: skip
    assert changed.status_code == 200
    assert changed.json()["device_type"] == "meter" and changed.json()["attributes"] == {"floor": 2}
    refused = await client.patch("/api/v1/devices/p", json={"type": "nope"}, headers=write)
    _problem(refused, 404)
    assert (await client.delete("/api/v1/devices/p", headers=write)).status_code == 204
    _problem(await client.get("/api/v1/devices/p", headers=api.auth("read")), 404)
    _problem(await client.delete("/api/v1/devices/p", headers=write), 404)


async def test_validation_errors_are_problem_documents(api: Api, client: httpx.AsyncClient) -> None:
    write = api.auth("write")
    bad_id = _problem(await client.post("/api/v1/devices", json={"id": "bad id", "type": "t",
                                        "force": True}, headers=write), 422)  # fmt: skip
    assert bad_id["errors"] == [{"field": "id", "message": bad_id["detail"]}]
    missing = _problem(await client.post("/api/v1/devices", json={"id": "x"}, headers=write), 422)
    assert any(error["field"].endswith("type") for error in missing["errors"])
    not_json = await client.post("/api/v1/devices", content=b"{", headers={**write,
                                 "content-type": "application/json"})  # fmt: skip
    _problem(not_json, 422)
    bad_auth = await client.post("/api/v1/devices", json={"id": "x", "type": "t", "auth": "pw"},
                                 headers=write)  # fmt: skip
    _problem(bad_auth, 422)
    _problem(await client.get("/api/v1/devices", params={"limit": 0}, headers=write), 422)
    _problem(await client.put("/api/v1/devices", headers=write), 405)
    _problem(await client.get("/api/v1/nothing-here", headers=write), 404)


async def test_cli_and_api_agree_on_register_and_show(api: Api, client: httpx.AsyncClient) -> None:
    await _parser(api)
    env = {"PRESERVARIUM_DATABASE_URL": api.database_url, "PRESERVARIUM_SECRET_KEY": SECRET_KEY}
    done = run_cli("device", "register", "cli-dev", "--type", "thermo", "--auth", "psk",
                   "--attr", "site=x", "--json", env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    from_cli = json.loads(done.stdout)
    response = await client.post("/api/v1/devices", json={"id": "api-dev", "type": "thermo",
                                 "auth": "psk", "attributes": {"site": "x"}},
                                 headers=api.auth("write"))  # fmt: skip
    from_api = response.json()
    assert from_cli.keys() == from_api.keys()
    for key in ("device_type", "attributes", "auth"):
        assert from_cli[key] == from_api[key]
    for device_id in ("cli-dev", "api-dev"):
        shown_cli = json.loads(run_cli("device", "show", device_id, "--json", env=env).stdout)
        shown_api = (await client.get(f"/api/v1/devices/{device_id}",
                                      headers=api.auth("read"))).json()  # fmt: skip
        assert shown_cli == shown_api


# Attributes the registry refuses: over the size bound, deeper than the depth bound, a
# lone surrogate (valid JSON text, not encodable UTF-8). Each was a 500 "internal".
REFUSED_ATTRIBUTES = (
    b'{"k": "' + b"x" * 20_000 + b'"}',
    b'{"a": [[[[[[[[[[1]]]]]]]]]]}',
    b'{"s": "\\ud800"}',
)


async def test_attributes_out_of_bounds_are_422_everywhere_and_write_nothing(
    api: Api, client: httpx.AsyncClient
) -> None:
    await _parser(api)
    write = {**api.auth("write"), "content-type": "application/json"}
    kept = {"id": "kept", "type": "thermo", "attributes": {"site": "a"}}
    created = await client.post("/api/v1/devices", json=kept, headers=api.auth("write"))
    assert created.status_code == 201, created.text
    for attributes in REFUSED_ATTRIBUTES:
        register = b'{"id": "new-1", "type": "thermo", "attributes": ' + attributes + b"}"
        problem = _problem(await client.post("/api/v1/devices", content=register,
                                             headers=write), 422)  # fmt: skip
        assert problem["type"] == "https://preservarium.invalid/problems/invalid-attributes"
        patch = b'{"attributes": ' + attributes + b"}"
        _problem(await client.patch("/api/v1/devices/kept", content=patch, headers=write), 422)
        rows = b'[{"id": "imp-1", "type": "thermo", "attributes": ' + attributes + b"}]"
        problem = _problem(await client.post("/api/v1/devices/import", content=rows,
                                             headers=write), 422)  # fmt: skip
        assert [error["field"] for error in problem["errors"]] == ["row 1"]
    listed = (await client.get("/api/v1/devices", headers=api.auth("read"))).json()
    assert [(d["id"], d["attributes"]) for d in listed["items"]] == [("kept", {"site": "a"})]


async def test_a_nul_character_in_a_path_or_query_is_422_on_every_database(
    api: Api, client: httpx.AsyncClient
) -> None:
    # PostgreSQL text cannot hold U+0000: each of these was a 500 there (and a lookup of a
    # name no row can have on SQLite).
    admin = api.auth("admin")
    for method, path in (
        ("GET", "/api/v1/devices/a%00b"),
        ("PATCH", "/api/v1/devices/a%00b"),
        ("DELETE", "/api/v1/devices/a%00b"),
        ("GET", "/api/v1/devices?type=%00"),
        ("GET", "/api/v1/devices?after=a%00"),
        ("GET", "/api/v1/commands?device=%00"),
        ("GET", "/api/v1/commands/%00"),
        ("DELETE", "/api/v1/commands/%00"),
        ("GET", "/api/v1/parsers/%00/versions"),
        ("GET", "/api/v1/parsers/%00/versions/1"),
    ):
        response = await client.request(method, path, headers=admin, json={"type": "t"})
        problem = _problem(response, 422)
        assert problem["type"] == "https://preservarium.invalid/problems/invalid-input", path
