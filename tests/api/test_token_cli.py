"""`preservarium token create|list|revoke` through the real console script: the token is
printed once, works on the API, is never listed, and stops working when revoked."""

from __future__ import annotations

import json

import httpx

from tests.api.conftest import Api
from tests.support.cli import run_cli


async def test_create_list_revoke(api: Api, client: httpx.AsyncClient) -> None:
    env = {"PRESERVARIUM_DATABASE_URL": api.database_url}
    done = run_cli("token", "create", "ci-deploy", "--scope", "write", "--json", env=env)
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    assert created.keys() == {"name", "scope", "token"} and created["scope"] == "write"
    bearer = {"Authorization": f"Bearer {created['token']}"}
    assert (await client.get("/api/v1/devices", headers=bearer)).status_code == 200
    listed = run_cli("token", "list", "--json", env=env)
    assert created["token"] not in listed.stdout
    mine = [t for t in json.loads(listed.stdout) if t["name"] == "ci-deploy"]
    assert mine[0]["scope"] == "write" and mine[0]["last_used_at"] and not mine[0]["revoked_at"]
    again = run_cli("token", "create", "ci-deploy", "--scope", "read", env=env)
    assert again.returncode == 1 and "exists" in again.stderr
    assert run_cli("token", "revoke", "ci-deploy", env=env).returncode == 0
    assert (await client.get("/api/v1/devices", headers=bearer)).status_code == 401
    bad = run_cli("token", "create", "no spaces", "--scope", "read", env=env)
    assert bad.returncode == 2
    wrong_scope = run_cli("token", "create", "x", "--scope", "root", env=env)
    assert wrong_scope.returncode == 2
