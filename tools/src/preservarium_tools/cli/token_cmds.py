"""`preservarium token ...`: bearer tokens of the operator HTTP API."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

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
    from preservarium.repositories import TokenRecord

app = typer.Typer(help="Create, list and revoke API tokens.", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="Machine-readable output.")
ONCE = "shown once: store it now, it cannot be shown again"


class ScopeChoice(StrEnum):
    """Scope's values, spelled here so that `--help` imports nothing heavy."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


def token_json(record: TokenRecord) -> dict[str, Any]:
    """A token as `token list --json` shows it: never the secret."""
    return {
        "name": record.name,
        "scope": record.scope.value,
        "created_at": record.created_at,
        "last_used_at": record.last_used_at,
        "revoked_at": record.revoked_at,
    }


@app.command("create")
def create(
    name: str = typer.Argument(..., metavar="NAME"),
    scope: ScopeChoice = typer.Option(
        ..., "--scope", help="read (GET), write (also changes), admin (also the audit log)."
    ),
    as_json: bool = JSON,
) -> None:
    """Create a token for the HTTP API and print it once (only its hash is stored)."""
    from preservarium.api_access import Scope, is_token_name

    if not is_token_name(name):
        fail(f"invalid token name {name!r}: use 1 to 64 characters of A-Z a-z 0-9 . _ -", 2)
    config = settings()

    async def body() -> tuple[TokenRecord, str]:
        from preservarium.repositories import SQLTokenRepository

        async with migrated_database(config) as engine:
            return await SQLTokenRepository(engine).create(name, Scope(scope.value))

    record, secret = run(body)
    stored_in(config)
    if as_json:
        print_json({"name": record.name, "scope": record.scope.value, "token": secret})
        return
    note(f"token {record.name} (scope {record.scope.value}), {ONCE}:")
    print(secret)


@app.command("list")
def list_tokens(as_json: bool = JSON) -> None:
    """List the tokens (names, scopes, use), never their secrets."""
    config = settings()

    async def body() -> list[TokenRecord]:
        from preservarium.repositories import SQLTokenRepository

        async with migrated_database(config) as engine:
            return await SQLTokenRepository(engine).list()

    records = run(body)
    if as_json:
        print_json([token_json(record) for record in records])
        return
    table = Table("name", "scope", "created", "last used", "revoked")
    for record in records:
        table.add_row(record.name, record.scope.value, when(record.created_at),
                      when(record.last_used_at), when(record.revoked_at))  # fmt: skip
    console.print(table)


@app.command("revoke")
def revoke(name: str = typer.Argument(..., metavar="NAME"), as_json: bool = JSON) -> None:
    """Revoke a token: the API refuses it from now on (its name stays in the audit log)."""
    config = settings()

    async def body() -> TokenRecord:
        from preservarium.repositories import SQLTokenRepository

        async with migrated_database(config) as engine:
            return await SQLTokenRepository(engine).revoke(name)

    record = run(body)
    stored_in(config)
    if as_json:
        print_json(token_json(record))
        return
    console.print(f"revoked {record.name}", highlight=False)
