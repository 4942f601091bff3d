"""What an operator graphs about the gateway."""

from __future__ import annotations

from preservarium.metrics import LabelCache
from preservarium.supervisor import SupervisorMetrics
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

API_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0)
# Batch sizes: 1 is the idle case; 64 is the most one message carries.
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class GatewayMetrics:
    """The gateway's metrics, in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.contacts = Counter(
            "preservarium_gateway_contacts",
            "Device contacts by route, response code, how they authenticated "
            "(none, token, psk, oscore) and outcome (accepted, unauthenticated, forbidden, "
            "rate_limited, refused).",
            ["route", "code", "auth", "outcome"], registry=r,
        )  # fmt: skip
        self.auth_failures = Counter(
            "preservarium_gateway_auth_failures",
            "Contacts that did not authenticate as the device they name, by reason.",
            ["reason"], registry=r,
        )  # fmt: skip
        self.rate_limited = Counter(
            "preservarium_gateway_rate_limited",
            "Contacts answered 4.29, by the limit they hit (source, device, auth_failures).",
            ["scope"], registry=r,
        )  # fmt: skip
        self.contact_latency = Histogram(
            "preservarium_gateway_contact_seconds", "Contact latency, request in to response out.",
            ["route"], buckets=BUCKETS, registry=r,
        )  # fmt: skip
        self.publish_latency = Histogram(
            "preservarium_gateway_kafka_publish_seconds", "Kafka publish latency (to the ack).",
            ["topic"], buckets=BUCKETS, registry=r,
        )  # fmt: skip
        self.publish_failures = Counter(
            "preservarium_gateway_kafka_publish_failures", "Kafka records not acknowledged.",
            ["topic"], registry=r,
        )  # fmt: skip
        self.sandbox_latency = Histogram(
            "preservarium_gateway_sandbox_call_seconds", "Sandbox call latency.",
            ["method"], buckets=BUCKETS, registry=r,
        )  # fmt: skip
        self.sandbox_batch = Histogram(
            "preservarium_gateway_sandbox_batch_contacts",
            "Contacts carried by one ParseStream message to the sandbox (1 when idle; "
            "contacts that arrive while earlier messages are out go together).",
            buckets=BATCH_BUCKETS, registry=r,
        )  # fmt: skip
        self.route_reparses = Counter(
            "preservarium_gateway_route_reparses",
            "Route contacts parsed a second time, with the attributes of the device "
            "identify() named (only devices that have attributes cost one).",
            registry=r,
        )
        self.parse_errors = Counter(
            "preservarium_gateway_parse_errors", "Uplinks that went to uplink.failed, by kind.",
            ["kind"], registry=r,
        )  # fmt: skip
        self.commands = Counter(
            "preservarium_gateway_commands", "Command status records by status.",
            ["status"], registry=r,
        )  # fmt: skip
        self.pending_devices = Gauge(
            "preservarium_gateway_pending_command_devices", "Devices with a queued command.",
            registry=r,
        )  # fmt: skip
        self.dedup_entries = Gauge(
            "preservarium_gateway_dedup_entries", "CoAP message deduplication entries held.",
            registry=r,
        )  # fmt: skip
        self.datagrams_refused = Counter(
            "preservarium_gateway_datagrams_refused",
            "Datagrams refused before CoAP processing, by cause.", ["cause"], registry=r,
        )  # fmt: skip
        self.oscore_refused = Counter(
            "preservarium_gateway_oscore_refused",
            "OSCORE requests refused before the contact path, by cause (method, malformed, "
            "unknown_kid, decrypt_failed, replay, unavailable).", ["cause"], registry=r,
        )  # fmt: skip
        self.oscore_contexts = Gauge(
            "preservarium_gateway_oscore_contexts", "OSCORE security contexts held in memory.",
            registry=r,
        )  # fmt: skip
        self.api_requests = Counter(
            "preservarium_gateway_api_requests",
            "Operator API requests by route template, method and HTTP status.",
            ["route", "method", "status"], registry=r,
        )  # fmt: skip
        self.api_latency = Histogram(
            "preservarium_gateway_api_request_seconds",
            "Operator API latency by route template and method (to the end of the response; "
            "a stream lasts as long as its client).",
            ["route", "method"], buckets=API_BUCKETS, registry=r,
        )  # fmt: skip
        self.api_streams = Gauge(
            "preservarium_gateway_api_streams", "Server-Sent Event streams open now.",
            registry=r,
        )  # fmt: skip
        self.api_audit_failures = Counter(
            "preservarium_gateway_api_audit_failures",
            "Writes through the API whose audit entry could not be stored.", registry=r,
        )  # fmt: skip
        self.api_replays_running = Gauge(
            "preservarium_gateway_api_replays_running",
            "Replays and dry runs started through the API that run now.", registry=r,
        )  # fmt: skip
        self.api_replays = Counter(
            "preservarium_gateway_api_replays",
            "Replays started through the API that ended, by status.", ["status"], registry=r,
        )  # fmt: skip
        self.last_seen_flushes = Counter(
            "preservarium_gateway_last_seen_flushes",
            "Batched writes of device last-seen times, by result (ok, failed: the entries "
            "are kept for the next flush).", ["result"], registry=r,
        )  # fmt: skip
        self.last_seen_devices = Counter(
            "preservarium_gateway_last_seen_devices",
            "Device last-seen times written (one per device per flush).", registry=r,
        )  # fmt: skip
        self.last_seen_dropped = Counter(
            "preservarium_gateway_last_seen_dropped",
            "Contacts whose time was not held because the last-seen buffer was full.",
            registry=r,
        )  # fmt: skip
        self.last_seen_flush_latency = Histogram(
            "preservarium_gateway_last_seen_flush_seconds",
            "Duration of a successful last-seen flush (one batched upsert).",
            buckets=BUCKETS, registry=r,
        )  # fmt: skip
        self.tasks = SupervisorMetrics(r)

        self.child = LabelCache().child

    def published(self, topic: str, seconds: float, ok: bool) -> None:
        """Observer for the Kafka publisher."""
        if ok:
            self.child(self.publish_latency, topic).observe(seconds)
        else:
            self.child(self.publish_failures, topic).inc()
