"""`device register --auth/--attr`, `device credentials --rotate` and `device show`
through the real console script, on both database backends: secrets are printed once,
in the documented JSON shapes, and never shown again."""

from __future__ import annotations

import json

import pytest
from preservarium.db.engine import make_engine
from preservarium.db.models import utcnow
from preservarium.identity import SecretBox
from preservarium.repositories import SQLCredentialRepository, SQLDeviceActivityRepository

from tests.cli.test_registry_cli import failure
from tests.sdk.test_identity import KEY_A
from tests.support.cli import run_cli


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    return {"PRESERVARIUM_DATABASE_URL": database_url, "PRESERVARIUM_SECRET_KEY": KEY_A}


def register(env: dict[str, str], device_id: str, *extra: str) -> dict[str, object]:
    done = run_cli("device", "register", device_id, "--type", "t", "--force", "--json",
                   *extra, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


async def stored_token_matches(database_url: str, device_id: str, token: str) -> bool:
    engine = make_engine(database_url)
    try:
        repository = SQLCredentialRepository(engine, secrets=SecretBox([KEY_A]))
        return await repository.verify_token(device_id, token)
    finally:
        await engine.dispose()


async def test_each_kind_prints_its_document_once(env: dict[str, str], database_url: str) -> None:
    token = register(env, "d-tok", "--auth", "token", "--attr", "site=north", "--attr", "n=2")
    assert token["device_id"] == "d-tok" and token["auth"] == "token"
    assert token["attributes"] == {"site": "north", "n": "2"}
    assert await stored_token_matches(database_url, "d-tok", str(token["token"]))
    psk = register(env, "d-psk", "--auth", "psk")
    assert psk["psk_identity"] == "d-psk" and len(str(psk["psk"])) == 16
    assert bytes.fromhex(str(psk["psk_hex"])) == str(psk["psk"]).encode()
    oscore = register(env, "d-osc", "--auth", "oscore")
    context = oscore["oscore"]
    assert isinstance(context, dict)
    assert set(context) == {"sender_id_hex", "recipient_id_hex", "master_secret_hex",
                            "master_salt_hex", "algorithm", "hkdf"}  # fmt: skip
    assert register(env, "d-none")["auth"] == "none"


async def test_show_says_the_kind_never_the_secret(env: dict[str, str]) -> None:
    token = str(register(env, "d-tok", "--auth", "token")["token"])
    shown = run_cli("device", "show", "d-tok", "--json", env=env)
    assert json.loads(shown.stdout)["auth"] == "token"
    assert json.loads(shown.stdout)["last_authenticated_at"] is None
    summary = run_cli("device", "credentials", "d-tok", env=env)
    assert "auth token" in summary.stdout
    for done in (shown, summary):
        assert done.returncode == 0 and token not in done.stdout + done.stderr


async def test_show_gives_the_last_contact_a_gateway_saw(
    env: dict[str, str], database_url: str
) -> None:
    register(env, "d-none")
    assert "last contact -\n" in run_cli("device", "show", "d-none", env=env).stdout
    engine = make_engine(database_url)
    try:  # what a gateway's flush writes for a device without credentials
        await SQLDeviceActivityRepository(engine).record_seen({"d-none": utcnow()})
    finally:
        await engine.dispose()
    shown = run_cli("device", "show", "d-none", "--json", env=env)
    document = json.loads(shown.stdout)
    assert document["last_contact_at"] is not None
    assert document["last_contact_at"] == document["last_seen_at"]
    assert "last contact -\n" not in run_cli("device", "show", "d-none", env=env).stdout


async def test_rotation_replaces_the_credentials(env: dict[str, str], database_url: str) -> None:
    old = str(register(env, "d-tok", "--auth", "token")["token"])
    done = run_cli("device", "credentials", "d-tok", "--rotate", "--json", env=env)
    assert done.returncode == 0, done.stderr
    new = json.loads(done.stdout)
    assert set(new) == {"device_id", "auth", "token"} and new["token"] != old
    assert await stored_token_matches(database_url, "d-tok", new["token"])
    assert not await stored_token_matches(database_url, "d-tok", old)
    given = run_cli("device", "credentials", "d-tok", "--auth", "psk", "--json", env=env)
    assert set(json.loads(given.stdout)) == {"device_id", "auth", "psk_identity", "psk", "psk_hex"}


async def test_refusals_store_nothing(env: dict[str, str]) -> None:
    no_key = {**env, "PRESERVARIUM_SECRET_KEY": ""}
    line = failure(run_cli("device", "register", "d-1", "--type", "t", "--force", "--auth",
                           "psk", env=no_key))  # fmt: skip
    assert "PRESERVARIUM_SECRET_KEY" in line
    long_id = "x" * 40
    line = failure(run_cli("device", "register", long_id, "--type", "t", "--force", "--auth",
                           "psk", env=env))  # fmt: skip
    assert "32 bytes" in line
    line = failure(run_cli("device", "register", "d-1", "--type", "t", "--force", "--attr",
                           "novalue", env=env))  # fmt: skip
    assert "KEY=VALUE" in line
    listed = run_cli("device", "list", "--json", env=env)
    assert json.loads(listed.stdout) == []


def test_the_cli_offers_exactly_the_auth_kinds() -> None:
    from preservarium.identity import AuthKind
    from preservarium_tools.cli.device_credentials import AuthChoice

    assert [choice.value for choice in AuthChoice] == [kind.value for kind in AuthKind]
