"""API tokens and the audit log on PostgreSQL and SQLite."""

from __future__ import annotations

import pytest
from preservarium.api_access import Scope, token_digest
from preservarium.errors import ConflictError, NotFoundError
from preservarium.repositories import SQLAuditRepository, SQLTokenRepository
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


async def test_tokens_are_stored_hashed_and_revocable(engine: AsyncEngine) -> None:
    tokens = SQLTokenRepository(engine)
    record, secret = await tokens.create("ops", Scope.ADMIN)
    assert record.scope is Scope.ADMIN and record.active and len(secret) > 40
    async with engine.connect() as connection:
        stored = (await connection.execute(text("SELECT token_sha256 FROM api_tokens"))).scalar()
    assert stored == token_digest(secret) and secret not in str(stored)
    found = await tokens.authenticate(secret)
    assert found is not None and found.name == "ops"
    assert (await tokens.list())[0].last_used_at is not None
    assert await tokens.authenticate(secret + "x") is None
    with pytest.raises(ConflictError):
        await tokens.create("ops", Scope.READ)
    await tokens.revoke("ops")
    await tokens.revoke("ops")  # again: harmless
    assert await tokens.authenticate(secret) is None
    with pytest.raises(NotFoundError):
        await tokens.revoke("nobody")


def test_scopes_are_ordered() -> None:
    assert Scope.ADMIN.allows(Scope.WRITE) and Scope.WRITE.allows(Scope.READ)
    assert not Scope.READ.allows(Scope.WRITE) and not Scope.WRITE.allows(Scope.ADMIN)


async def test_audit_pages_newest_first(engine: AsyncEngine) -> None:
    audit = SQLAuditRepository(engine)
    for n in range(5):
        await audit.add(token_name="ops", method="POST", route="/api/v1/devices",
                        target=f"d{n}", status=201, detail={"n": n})  # fmt: skip
    first = await audit.page(limit=3)
    assert [entry.target for entry in first] == ["d4", "d3", "d2"]
    rest = await audit.page(limit=3, before=first[-1].id)
    assert [entry.detail["n"] for entry in rest] == [1, 0]
