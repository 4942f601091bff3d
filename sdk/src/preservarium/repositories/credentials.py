"""Device credentials in SQL: generated here, stored hashed or sealed, looked up per contact.

The plain secrets leave this module only inside the one-time documents that
`set_credentials` and `rotate` return, and as the key material the DTLS and OSCORE
layers need (`psk_for_identity`, `oscore_for_kid`), opened with the SecretBox.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from preservarium.db.models import Device, DeviceCredential, OscoreReplayWindow, utcnow
from preservarium.errors import ConflictError, CredentialError, NotFoundError
from preservarium.identity import generate
from preservarium.identity.documents import (
    CredentialDocument,
    NoCredentialDocument,
    OscoreDocument,
    PskDocument,
    TokenDocument,
)
from preservarium.identity.kinds import DTLS_PSK_IDENTITY_MAX_BYTES, AuthKind, OscoreMaterial
from preservarium.identity.secretbox import SecretBox
from preservarium.identity.tokens import token_hash, token_matches
from preservarium.repositories.base import SQLRepository
from preservarium.repositories.devices import bump_registry_revision

# A fresh 6-byte kid colliding with a stored one is rare; this many tries make it moot.
KID_ATTEMPTS = 4
# Hashed when a device has no token, so that a check costs the same either way.
_NO_TOKEN_HASH = token_hash("")
RESEAL_BATCH = 500


@dataclass(frozen=True, slots=True)
class CredentialSummary:
    """What may be shown about a device's credentials: never the secret."""

    device_id: str
    auth: AuthKind
    created_at: datetime | None
    last_authenticated_at: datetime | None


@dataclass(frozen=True, slots=True)
class AuthEntry:
    """What a gateway holds in memory to check a contact: the kind and a token's hash.

    The hash of a 256-bit token reveals nothing usable; PSKs and OSCORE secrets are not
    here (the DTLS keyring and the OSCORE layer fetch those themselves).
    """

    auth: AuthKind
    token_sha256: str | None = None
    oscore_kid: str | None = None  # hex; a gateway drops a cached context whose kid changed


NO_CREDENTIALS = AuthEntry(AuthKind.NONE)


@dataclass(frozen=True, slots=True)
class OscoreContextRecord:
    """The OSCORE context of the device whose requests carry this kid."""

    device_id: str
    material: OscoreMaterial


def _psk_context(device_id: str) -> str:
    return f"psk:{device_id}"


def _oscore_context(device_id: str) -> str:
    return f"oscore:{device_id}"


class SQLCredentialRepository(SQLRepository):
    """Credentials per device; `secrets` seals and opens PSKs and OSCORE master secrets."""

    def __init__(self, engine: AsyncEngine, *, secrets: SecretBox) -> None:
        super().__init__(engine)
        self._box = secrets

    async def set_credentials(self, device_id: str, auth: AuthKind) -> CredentialDocument:
        """Generate and store new credentials of kind `auth`, replacing any; show them once.

        NotFoundError if the device is not registered; SecretKeyError (`no_key`) for
        psk and oscore when no secret key is configured.
        """
        if auth.has_secret_at_rest:
            self._box.require_key()
        if auth is AuthKind.PSK and len(device_id.encode()) > DTLS_PSK_IDENTITY_MAX_BYTES:
            raise CredentialError(
                f"device id {device_id!r} is longer than the {DTLS_PSK_IDENTITY_MAX_BYTES} "
                "bytes a DTLS PSK identity may have",
                kind="psk_identity_too_long",
            )
        attempts = KID_ATTEMPTS if auth is AuthKind.OSCORE else 1
        for attempt in range(1, attempts + 1):
            row, document = self._generate(device_id, auth)
            try:
                await self._replace(row)
            except ConflictError:
                if attempt == attempts:
                    raise
            else:
                break
        return document

    async def rotate(self, device_id: str) -> CredentialDocument:
        """New credentials of the device's current kind; NotFoundError if unregistered."""
        return await self.set_credentials(device_id, await self.auth_kind(device_id))

    async def auth_kind(self, device_id: str) -> AuthKind:
        """The device's kind (`none` when registered without credentials)."""
        return (await self.summary(device_id)).auth

    async def summary(self, device_id: str) -> CredentialSummary:
        """Kind and last authentication of a registered device; NotFoundError otherwise."""
        async with self.transaction() as session:
            device = await session.get(Device, device_id)
            row = await session.get(DeviceCredential, device_id)
        if device is None:
            raise NotFoundError(f"device {device_id!r} is not registered")
        if row is None:
            return CredentialSummary(device_id, AuthKind.NONE, None, None)
        return CredentialSummary(
            device_id, AuthKind(row.auth), row.created_at, row.last_authenticated_at
        )

    async def auth_entries(self) -> dict[str, AuthEntry]:
        """Every device with credentials: its kind and token hash (no other secret)."""
        async with self.transaction() as session:
            rows = (
                await session.execute(
                    select(
                        DeviceCredential.device_id,
                        DeviceCredential.auth,
                        DeviceCredential.token_sha256,
                        DeviceCredential.oscore_kid,
                    )
                )
            ).all()
        return {
            device_id: AuthEntry(AuthKind(auth), digest, kid)
            for device_id, auth, digest, kid in rows
        }

    async def auth_entry(self, device_id: str) -> AuthEntry:
        """One device's kind and token hash (`none` when it has no credentials row)."""
        async with self.transaction() as session:
            row = await session.get(DeviceCredential, device_id)
        if row is None:
            return NO_CREDENTIALS
        return AuthEntry(AuthKind(row.auth), row.token_sha256, row.oscore_kid)

    async def verify_token(self, device_id: str, token: str) -> bool:
        """Whether `token` is the device's token (constant-time compare of the hashes)."""
        async with self.transaction() as session:
            stored = await session.scalar(
                select(DeviceCredential.token_sha256).where(
                    DeviceCredential.device_id == device_id,
                    DeviceCredential.auth == AuthKind.TOKEN.value,
                )
            )
        matches = token_matches(token, stored or _NO_TOKEN_HASH)
        return stored is not None and matches

    async def psk_for_identity(self, identity: str) -> bytes | None:
        """The PSK of the device named by a DTLS PSK identity, or None."""
        async with self.transaction() as session:
            sealed = await session.scalar(
                select(DeviceCredential.sealed_secret).where(
                    DeviceCredential.device_id == identity,
                    DeviceCredential.auth == AuthKind.PSK.value,
                )
            )
        if sealed is None:
            return None
        return self._box.open(sealed, context=_psk_context(identity))

    async def all_psks(self) -> dict[str, bytes]:
        """Every PSK device's key by identity (for a gateway's in-memory keyring)."""
        async with self.transaction() as session:
            rows = (
                await session.execute(
                    select(DeviceCredential.device_id, DeviceCredential.sealed_secret).where(
                        DeviceCredential.auth == AuthKind.PSK.value
                    )
                )
            ).all()
        return {
            device_id: self._box.open(sealed, context=_psk_context(device_id))
            for device_id, sealed in rows
            if sealed is not None
        }

    async def oscore_for_kid(self, kid: bytes) -> OscoreContextRecord | None:
        """The OSCORE context whose device sends with this kid (the gateway's recipient id)."""
        async with self.transaction() as session:
            row = await session.scalar(
                select(DeviceCredential).where(
                    DeviceCredential.oscore_kid == kid.hex(),
                    DeviceCredential.auth == AuthKind.OSCORE.value,
                )
            )
        if row is None:
            return None
        return OscoreContextRecord(row.device_id, self._material(row))

    async def mark_authenticated(
        self, device_id: str, *, at: datetime | None = None, granularity_s: float = 60.0
    ) -> None:
        """Record that the device authenticated; at most one write per `granularity_s`.

        A contact is not slowed by a write when the stored time is recent enough.
        """
        now = at or utcnow()
        stale = now - timedelta(seconds=granularity_s)
        async with self.transaction() as session:
            await session.execute(
                update(DeviceCredential)
                .where(
                    DeviceCredential.device_id == device_id,
                    or_(
                        DeviceCredential.last_authenticated_at.is_(None),
                        DeviceCredential.last_authenticated_at <= stale,
                    ),
                )
                .values(last_authenticated_at=now)
            )

    async def reseal_all(self) -> int:
        """Re-seal every secret not sealed under the current key; return how many.

        Run after putting a new key first in PRESERVARIUM_SECRET_KEY; once it returns,
        the older keys can be dropped from the setting.
        """
        current = self._box.require_key()
        done = 0
        while True:
            async with self.transaction() as session:
                rows = (
                    await session.scalars(
                        select(DeviceCredential)
                        .where(
                            DeviceCredential.sealed_secret.is_not(None),
                            DeviceCredential.secret_key_id != current,
                        )
                        .limit(RESEAL_BATCH)
                        .with_for_update()
                    )
                ).all()
                for row in rows:
                    self._reseal(row)
            done += len(rows)
            if len(rows) < RESEAL_BATCH:
                return done

    def _reseal(self, row: DeviceCredential) -> None:
        assert row.sealed_secret is not None
        context = (
            _psk_context(row.device_id)
            if row.auth == AuthKind.PSK.value
            else _oscore_context(row.device_id)
        )
        secret = self._box.open(row.sealed_secret, context=context)
        row.sealed_secret = self._box.seal(secret, context=context)
        row.secret_key_id = self._box.current_key_id

    async def _replace(self, row: DeviceCredential) -> None:
        async with self.transaction() as session:
            if await session.get(Device, row.device_id) is None:
                raise NotFoundError(f"device {row.device_id!r} is not registered")
            # The old context's replay window goes with it: a new context starts empty.
            await session.execute(
                delete(OscoreReplayWindow).where(OscoreReplayWindow.device_id == row.device_id)
            )
            await session.execute(
                delete(DeviceCredential).where(DeviceCredential.device_id == row.device_id)
            )
            await session.flush()
            session.add(row)
            if row.oscore_kid is not None:
                await session.flush()
                session.add(
                    OscoreReplayWindow(
                        kid=row.oscore_kid, device_id=row.device_id, floor=0, bitmap=0, version=0
                    )
                )
            await bump_registry_revision(self, session)  # gateways reload within seconds

    def _generate(
        self, device_id: str, auth: AuthKind
    ) -> tuple[DeviceCredential, CredentialDocument]:
        row = DeviceCredential(device_id=device_id, auth=auth.value, created_at=utcnow())
        if auth is AuthKind.TOKEN:
            token = generate.new_token()
            row.token_sha256 = token_hash(token)
            return row, TokenDocument(device_id, token)
        if auth is AuthKind.PSK:
            psk = generate.new_psk()
            self._seal_into(row, psk.encode(), _psk_context(device_id))
            return row, PskDocument(device_id, psk)
        if auth is AuthKind.OSCORE:
            material = generate.new_oscore_material()
            self._seal_into(row, material.master_secret, _oscore_context(device_id))
            row.oscore_kid = material.sender_id.hex()
            row.oscore_recipient_id = material.recipient_id.hex()
            row.oscore_master_salt = material.master_salt.hex()
            row.oscore_algorithm = material.algorithm
            row.oscore_hkdf = material.hkdf
            return row, OscoreDocument(device_id, material)
        return row, NoCredentialDocument(device_id)

    def _seal_into(self, row: DeviceCredential, secret: bytes, context: str) -> None:
        row.sealed_secret = self._box.seal(secret, context=context)
        row.secret_key_id = self._box.current_key_id

    def _material(self, row: DeviceCredential) -> OscoreMaterial:
        assert row.sealed_secret and row.oscore_kid and row.oscore_recipient_id
        return OscoreMaterial(
            sender_id=bytes.fromhex(row.oscore_kid),
            recipient_id=bytes.fromhex(row.oscore_recipient_id),
            master_secret=self._box.open(row.sealed_secret, context=_oscore_context(row.device_id)),
            master_salt=bytes.fromhex(row.oscore_master_salt or ""),
            algorithm=row.oscore_algorithm or "",
            hkdf=row.oscore_hkdf or "",
        )
