"""SQLAlchemy models: parsers, devices, credentials, pending commands and replays."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that always comes back timezone-aware UTC (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused; use UTC-aware timestamps")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base with a naming convention Alembic can rely on."""

    metadata = MetaData(naming_convention=NAMING)


class ParserType(Base):
    """One device type: its version counter and which version is active."""

    __tablename__ = "parser_types"

    device_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    latest_version: Mapped[int] = mapped_column(Integer, default=0)
    active_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ParserVersion(Base):
    """One immutable, numbered parser version of a device type."""

    __tablename__ = "parser_versions"
    __table_args__ = (UniqueConstraint("device_type", "version", name="uq_parser_versions_type"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_type: Mapped[str] = mapped_column(
        String(64), ForeignKey("parser_types.device_type", ondelete="CASCADE")
    )
    version: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    uploaded_by: Mapped[str] = mapped_column(String(128), default="")
    examples: Mapped[str | None] = mapped_column(Text, nullable=True)


class Device(Base):
    """A registered device: its id names it on `/d/{id}`, its type names the parser."""

    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_type: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The integrator's key/value pairs (`device register --attr k=v`); parsers see them.
    attributes: Mapped[dict[str, Any]] = mapped_column(
        JSON, default=dict, server_default=text("'{}'")
    )


class DeviceLastSeen(Base):
    """When a gateway last delivered a contact of the device: written in batches by every
    gateway (the newest time wins), kept out of `devices` so that the registry revision
    does not move on every contact."""

    __tablename__ = "device_last_seen"

    device_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RegistryRevision(Base):
    """One row whose number grows with every change to the device registry: gateways poll
    it (a primary-key read) and reload their copy of the registry only when it moved."""

    __tablename__ = "registry_revision"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    revision: Mapped[int] = mapped_column(BigInteger, default=0)


class DeviceCredential(Base):
    """How a device authenticates; secrets only as hashes or sealed (see identity.secretbox).

    A registered device without a row authenticates with nothing (kind `none`).
    """

    __tablename__ = "device_credentials"
    # The gateway finds an OSCORE context by the kid of a request: it must name one device.
    __table_args__ = (Index("ix_device_credentials_oscore_kid", "oscore_kid", unique=True),)

    device_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    auth: Mapped[str] = mapped_column(String(16))
    token_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The PSK text or the OSCORE master secret, sealed; the key id says which key sealed it.
    sealed_secret: Mapped[str | None] = mapped_column(Text, nullable=True)
    secret_key_id: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # Hex ids from the device's point of view: its sender id is the requests' kid.
    oscore_kid: Mapped[str | None] = mapped_column(String(16), nullable=True)
    oscore_recipient_id: Mapped[str | None] = mapped_column(String(16), nullable=True)
    oscore_master_salt: Mapped[str | None] = mapped_column(String(64), nullable=True)
    oscore_algorithm: Mapped[str | None] = mapped_column(String(32), nullable=True)
    oscore_hkdf: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_authenticated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class OscoreReplayWindow(Base):
    """The replay window of one OSCORE security context, shared by every gateway.

    `version` grows by one on each update: writers compare and set on it, so two
    gateways cannot both accept the same sequence number.
    """

    __tablename__ = "oscore_replay_windows"

    kid: Mapped[str] = mapped_column(String(16), primary_key=True)
    device_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("device_credentials.device_id", ondelete="CASCADE"), index=True
    )
    floor: Mapped[int] = mapped_column(BigInteger)
    bitmap: Mapped[int] = mapped_column(BigInteger)
    version: Mapped[int] = mapped_column(BigInteger)


class Command(Base):
    """A command request waiting for (or done with) its device's next contact."""

    __tablename__ = "commands"
    __table_args__ = (Index("ix_commands_pending", "device_id", "status", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    request_id: Mapped[str] = mapped_column(String(128), unique=True)
    device_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ApiToken(Base):
    """A bearer token of the operator API: its name, its scope, and only a hash of it."""

    __tablename__ = "api_tokens"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    scope: Mapped[str] = mapped_column(String(16))
    # sha256 of a 256-bit random secret: a preimage search is hopeless, so no slow hash.
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AuditEntry(Base):
    """One write through the operator API: who, what, on which target, how it ended."""

    __tablename__ = "api_audit"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    token_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    method: Mapped[str] = mapped_column(String(8))
    route: Mapped[str] = mapped_column(String(200))
    target: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[int] = mapped_column(Integer)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Replay(Base):
    """One replay of raw uplinks through a parser version, and how far it got.

    `positions` maps each partition of the source topic to where the replay started,
    the next offset to read and the offset it stops at: `{"0": {"start", "next", "end"}}`.
    `counts` holds what it did so far (scanned, replayed, parsed, failed, skipped).
    `owner_*` and `lease_until` name the runner that holds the replay while it runs (a
    random id per run, its host and pid) and until when: another runner may take it
    over only once the lease has expired (the holder crashed).
    """

    __tablename__ = "replays"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    device_type: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    since: Mapped[datetime] = mapped_column(UTCDateTime)
    until: Mapped[datetime] = mapped_column(UTCDateTime)
    device_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    source: Mapped[str] = mapped_column(String(16))
    rate: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    positions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    owner_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    owner_host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    owner_pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
