"""Device credentials on the command line: issued with `device register --auth`, replaced by
`device credentials ID --rotate`, printed once and never again."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

import typer

from preservarium_tools.cli.common import (
    console,
    fail,
    note,
    print_json,
    run,
    settings,
    stored_in,
    when,
)
from preservarium_tools.cli.database import migrated_database

if TYPE_CHECKING:
    from preservarium.identity.documents import CredentialDocument
    from preservarium.identity.kinds import AuthKind
    from preservarium.repositories import CredentialSummary, SQLCredentialRepository
    from preservarium.settings import Settings
    from sqlalchemy.ext.asyncio import AsyncEngine

AUTH_HELP = "How the device proves who it is: none, token, psk (DTLS) or oscore."


class AuthChoice(StrEnum):
    """AuthKind's values, spelled here so that `--help` imports nothing heavy (the identity
    package brings the settings and cryptography); a test checks them against AuthKind."""

    NONE = "none"
    TOKEN = "token"
    PSK = "psk"
    OSCORE = "oscore"


def auth_option(default: AuthChoice | None, help_text: str) -> Any:
    """The `--auth` option."""
    return typer.Option(default, "--auth", help=help_text)


def auth_kind(value: AuthChoice) -> AuthKind:
    """The kind an `--auth` value names."""
    from preservarium.identity.kinds import AuthKind

    return AuthKind(value.value)


ONCE = "shown once: store it now, it cannot be shown again (rotate to get new credentials)"


def parse_attributes(pairs: list[str]) -> dict[str, str]:
    """`k=v` options into an object; exits with one line naming a malformed pair."""
    attributes: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            fail(f"invalid attribute {pair!r}: use KEY=VALUE")
        attributes[key.strip()] = value
    return attributes


def check_auth(device_id: str, auth: AuthKind, config: Settings) -> None:
    """Refuse, before anything is stored, credentials that cannot be issued."""
    from preservarium.identity.kinds import DTLS_PSK_IDENTITY_MAX_BYTES, AuthKind

    if auth.has_secret_at_rest and config.secret_key is None:
        fail(f"PRESERVARIUM_SECRET_KEY is not set: {auth.value} credentials cannot be stored")
    if auth is AuthKind.PSK and len(device_id.encode()) > DTLS_PSK_IDENTITY_MAX_BYTES:
        fail(
            f"device id {device_id!r} is longer than the {DTLS_PSK_IDENTITY_MAX_BYTES} bytes "
            "a DTLS PSK identity may have: use --auth token or oscore"
        )


def credential_repository(engine: AsyncEngine, config: Settings) -> SQLCredentialRepository:
    """The repository, with the secret key of the settings (if any)."""
    from preservarium.identity import SecretBox
    from preservarium.repositories import SQLCredentialRepository

    key = config.secret_key.get_secret_value() if config.secret_key is not None else None
    return SQLCredentialRepository(engine, secrets=SecretBox.from_setting(key))


def show_document(document: CredentialDocument, *, as_json: bool, extra: dict[str, Any]) -> None:
    """Print fresh credentials (the only time they are ever printed)."""
    shown = document.to_json()
    if as_json:
        print_json({**extra, **shown})
        return
    if shown["auth"] == "none":
        return
    console.print(f"credentials ({shown['auth']}), {ONCE}:", highlight=False)
    flat = {**shown.pop("oscore", {}), **shown}
    for key, value in flat.items():
        if key not in ("device_id", "auth"):
            console.print(f"  {key}: {value}", highlight=False, markup=False, soft_wrap=True)


def summary_json(summary: CredentialSummary) -> dict[str, Any]:
    """What may be shown of a device's credentials: kind and times, never a secret."""
    return {
        "auth": summary.auth.value,
        "credentials_created_at": summary.created_at,
        "last_authenticated_at": summary.last_authenticated_at,
    }


def summary_line(summary: CredentialSummary) -> str:
    """The same for humans."""
    return f"auth {summary.auth.value}  last authenticated {when(summary.last_authenticated_at)}"


def credentials(
    device_id: str = typer.Argument(..., metavar="ID"),
    rotate: bool = typer.Option(False, "--rotate", help="Replace the credentials; print once."),
    auth_value: AuthChoice | None = auth_option(
        None, "Give the device credentials of this kind instead (implies new)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show how a device authenticates (never the secret), or replace its credentials."""
    config = settings()
    auth = None if auth_value is None else auth_kind(auth_value)
    if auth is not None:
        check_auth(device_id, auth, config)

    async def body() -> CredentialDocument | CredentialSummary:
        async with migrated_database(config) as engine:
            repository = credential_repository(engine, config)
            if auth is not None:
                return await repository.set_credentials(device_id, auth)
            if rotate:
                return await repository.rotate(device_id)
            return await repository.summary(device_id)

    result = run(body)
    from preservarium.repositories import CredentialSummary

    if isinstance(result, CredentialSummary):
        if as_json:
            print_json({"device_id": device_id, **summary_json(result)})
        else:
            console.print(f"{device_id}  {summary_line(result)}", highlight=False)
        return
    stored_in(config)
    if not as_json:
        note(
            f"new {result.to_json()['auth']} credentials for {device_id}; the old ones stop working"
        )
    show_document(result, as_json=as_json, extra={})
