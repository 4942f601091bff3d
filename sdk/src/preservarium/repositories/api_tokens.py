"""The operator API's bearer tokens: created once, looked up by hash, revoked by name."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from preservarium.api_access import Scope, new_token, token_digest
from preservarium.db.models import ApiToken, utcnow
from preservarium.errors import ConflictError, NotFoundError
from preservarium.repositories.base import SQLRepository

LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A token as it may be shown: never the secret, nor its hash."""

    name: str
    scope: Scope
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        """False once revoked."""
        return self.revoked_at is None


def _record(row: ApiToken) -> TokenRecord:
    return TokenRecord(row.name, Scope(row.scope), row.created_at, row.last_used_at,
                       row.revoked_at)  # fmt: skip


class SQLTokenRepository(SQLRepository):
    """API tokens in SQL. A name is used once, even after its token is revoked, so the
    audit log's names stay unambiguous."""

    async def create(self, name: str, scope: Scope) -> tuple[TokenRecord, str]:
        """A new token: (its record, the secret, to be shown once); ConflictError if the
        name exists."""
        secret = new_token()
        row = ApiToken(name=name, scope=scope.value, token_sha256=token_digest(secret),
                       created_at=utcnow())  # fmt: skip
        try:
            async with self.transaction() as session:
                session.add(row)
        except ConflictError as exc:
            raise ConflictError(f"a token named {name!r} exists already") from exc
        return _record(row), secret

    async def list(self) -> list[TokenRecord]:
        """Every token, revoked ones too, by name."""
        async with self.transaction() as session:
            rows = (await session.scalars(select(ApiToken).order_by(ApiToken.name))).all()
        return [_record(row) for row in rows]

    async def revoke(self, name: str) -> TokenRecord:
        """Revoke a token (again is harmless); NotFoundError for an unknown name."""
        async with self.transaction() as session:
            row = await session.get(ApiToken, name)
            if row is None:
                raise NotFoundError(f"no token named {name!r}")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            return _record(row)

    async def authenticate(self, secret: str) -> TokenRecord | None:
        """The active token whose secret this is, or None; marks it used."""
        digest = token_digest(secret)
        async with self.transaction() as session:
            row = await session.scalar(select(ApiToken).where(ApiToken.token_sha256 == digest))
            # The lookup is by hash (nothing to learn from its timing); compare anyway,
            # in constant time, so that a collation quirk can never match another row.
            if row is None or not hmac.compare_digest(row.token_sha256, digest):
                return None
            if row.revoked_at is not None:
                return None
            # At most one write a minute per token: a busy client must not make every
            # request a write to the database.
            now = utcnow()
            if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
                row.last_used_at = now  # written when the transaction commits
            return _record(row)
