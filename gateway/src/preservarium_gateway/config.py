"""The gateway's configuration as one value, read from the settings at the edge."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from preservarium.settings import DEFAULT_GATEWAY_METRICS_PORT, HostPort, Settings

from preservarium_gateway.directory import UNKNOWN_LOOKUPS_PER_S


@dataclass(frozen=True, slots=True)
class Topics:
    """Full topic names for one prefix."""

    raw: str
    parsed: str
    failed: str
    command_request: str
    command_status: str

    @classmethod
    def with_prefix(cls, prefix: str) -> Topics:
        """The contract's topic suffixes under `prefix`."""
        return cls(
            raw=prefix + "uplink.raw",
            parsed=prefix + "uplink.parsed",
            failed=prefix + "uplink.failed",
            command_request=prefix + "command.request",
            command_status=prefix + "command.status",
        )

    def all(self) -> tuple[str, ...]:
        """Every topic, for creating them."""
        return (self.raw, self.parsed, self.failed, self.command_request, self.command_status)


@dataclass(frozen=True, slots=True)
class GatewayLimits:
    """Limits and timings of the gateway, with named defaults."""

    payload_bytes: int = 1024
    # Room for the options of a datagram beyond its payload: Uri-Path (a 64-char id and a
    # sub-path), Uri-Query, Uri-Host, Content-Format, Block1 fit with room to spare.
    options_bytes: int = 512
    # What the sandbox takes in a contact (more is INVALID_ARGUMENT there): query entries,
    # and characters in a query key or value or in the path. Beyond, the gateway answers
    # 4.00 before anything is published or a command claimed.
    query_entries: int = 64
    text_chars: int = 1024
    # Contacts handled at once (see `admission`): in all, and per source host. The
    # per-host cap leaves room for many devices behind one NAT address.
    contacts_in_flight: int = 4096
    source_contacts_in_flight: int = 128
    publish_timeout_s: float = 2.0
    sandbox_timeout_s: float = 0.5
    sandbox_streams: int = 2
    retry_after_s: int = 5
    dedup_lifetime_s: float = 247.0
    dedup_max_entries: int = 20_000
    # One source address (an IPv6 /64) holds at most this many: it cannot evict others.
    dedup_source_entries: int = 2_000
    refusal_log_interval_s: float = 10.0
    directory_refresh_s: float = 10.0
    unknown_device_ttl_s: float = 1.0
    unknown_lookups_per_s: float = UNKNOWN_LOOKUPS_PER_S
    commands_refresh_s: float = 1.0
    stale_claim_s: float = 60.0
    default_command_ttl_s: int = 86_400
    max_command_ttl_s: int = 30 * 86_400
    drain_timeout_s: float = 5.0
    topic_partitions: int = 3

    @property
    def max_datagram_bytes(self) -> int:
        """The largest datagram taken: header, 8-byte token, options, marker, payload."""
        return 4 + 8 + self.options_bytes + 1 + self.payload_bytes


def _instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Everything the gateway needs to run."""

    bind: HostPort
    routes: dict[str, str]
    kafka_bootstrap: str
    topics: Topics
    sandbox_addr: str
    database_url: str
    metrics_port: int
    auto_migrate: bool = False
    limits: GatewayLimits = field(default_factory=GatewayLimits)
    instance_id: str = field(default_factory=_instance_id)
    consumer_group: str = "preservarium-gateway"

    @classmethod
    def from_settings(cls, settings: Settings) -> GatewayConfig:
        """The configuration the environment describes."""
        return cls(
            bind=settings.coap_bind,
            routes=dict(settings.coap_routes),
            kafka_bootstrap=settings.kafka_bootstrap,
            topics=Topics.with_prefix(settings.topic_prefix),
            sandbox_addr=settings.sandbox_addr,
            database_url=settings.database_url,
            metrics_port=settings.metrics_port_or(DEFAULT_GATEWAY_METRICS_PORT),
            auto_migrate=settings.db_auto_migrate,
        )
