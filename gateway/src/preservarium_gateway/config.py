"""The gateway's configuration as one value, read from the settings at the edge."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from preservarium.contract.topics import PARTITIONS, Topics
from preservarium.settings import (
    DEFAULT_GATEWAY_METRICS_PORT,
    DeviceAuthMode,
    HostPort,
    Settings,
    parse_secret_keys,
)

from preservarium_gateway.directory import UNKNOWN_LOOKUPS_PER_S


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
    # Contacts handled at once (see `inflight`): in all, and per source host. The
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
    # How often the registry revision is read: a registry change reaches contacts this fast.
    directory_watch_s: float = 1.0
    unknown_device_ttl_s: float = 1.0
    unknown_lookups_per_s: float = UNKNOWN_LOOKUPS_PER_S
    # How often the devices seen since the last flush get their last-seen time written
    # (one batched statement), and how many devices are held in between at most.
    last_seen_flush_s: float = 10.0
    last_seen_entries: int = 100_000
    commands_refresh_s: float = 1.0
    # The command consumer's group session (heartbeats every third of it): a gateway that
    # dies gives its `command.request` partitions to the others after this long. Kafka's
    # brokers take 6 s to 30 min by default (a shorter one stops the consumer: see
    # `consumer.is_transient`); a group also waits for its members to join for a time
    # bound by it (Tansu: half of it, on every join; the tests' gateways use 2 s there).
    command_session_timeout_s: float = 10.0
    stale_claim_s: float = 60.0
    default_command_ttl_s: int = 86_400
    # Commands queued for one device at once; past it a request is `rejected`, so one
    # producer cannot grow a device's queue (and the database) without bound.
    command_queue_limit: int = 100
    max_command_ttl_s: int = 30 * 86_400
    drain_timeout_s: float = 5.0
    topic_partitions: int = PARTITIONS
    # Contacts per minute (0: no limit); each is a token bucket holding one minute's worth.
    device_rate_per_min: int = 120
    source_rate_per_min: int = 600
    # Failed authentications per source address per minute: past it, the source is answered
    # 4.29 before any lookup, so guessing tokens costs the guesser, not the gateway.
    auth_failures_per_min: int = 10
    # Sources and devices whose buckets are held; beyond it the least recently used goes.
    rate_limit_entries: int = 50_000

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
    # One of several gateway processes serves its metrics to its parent only (loopback).
    metrics_host: str = "0.0.0.0"
    auto_migrate: bool = False
    device_auth: DeviceAuthMode = DeviceAuthMode.REQUIRED
    coaps_bind: HostPort | None = None  # None: no DTLS listener
    api_listen: HostPort | None = None  # None: no operator HTTP API
    # PRESERVARIUM_SECRET_KEY split into keys, current first; opens the stored PSKs.
    secret_keys: tuple[str, ...] = field(default=(), repr=False)
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
            device_auth=settings.device_auth,
            coaps_bind=settings.coaps_bind,
            api_listen=settings.api_listen,
            secret_keys=_secret_keys(settings),
            limits=GatewayLimits(
                device_rate_per_min=settings.device_rate_per_min,
                source_rate_per_min=settings.source_rate_per_min,
                command_queue_limit=settings.command_queue_limit,
            ),
        )

    def check(self) -> None:
        """Refuse a configuration that cannot be served safely (GatewayStartError-worthy).

        In `required` mode, devices with PSKs (or OSCORE contexts) may exist, and
        without the secret key their secrets cannot be opened: such a gateway would
        turn every one of them away, so it does not start at all.
        """
        if self.device_auth is DeviceAuthMode.REQUIRED and not self.secret_keys:
            raise ValueError(
                "PRESERVARIUM_SECRET_KEY: required when PRESERVARIUM_DEVICE_AUTH=required "
                "(it opens the devices' stored PSKs)"
            )


def _secret_keys(settings: Settings) -> tuple[str, ...]:
    secret = settings.secret_key
    return parse_secret_keys(secret.get_secret_value()) if secret is not None else ()
