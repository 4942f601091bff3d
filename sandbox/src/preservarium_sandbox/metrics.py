"""What an operator graphs about the sandbox."""

from __future__ import annotations

from preservarium.metrics import LabelCache
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Batch sizes: 1 is the idle case; the top bucket is the stream's in-flight cap.
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class SandboxMetrics:
    """The sandbox's metrics, in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.calls = Counter(
            "preservarium_sandbox_calls", "Sandbox calls by method, parser and outcome.",
            ["method", "parser", "outcome"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "preservarium_sandbox_call_seconds", "Sandbox call latency by method.",
            ["method"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.timeouts = Counter(
            "preservarium_sandbox_timeouts", "Parser calls that ran past their deadline.",
            ["parser"], registry=r,
        )  # fmt: skip
        self.worker_restarts = Counter(
            "preservarium_sandbox_worker_restarts", "Worker processes killed and replaced.",
            ["reason"], registry=r,
        )  # fmt: skip
        self.cache = Counter(
            "preservarium_sandbox_cache_lookups", "Parser cache lookups.",
            ["cache", "result"], registry=r,
        )  # fmt: skip
        self.quarantined = Gauge(
            "preservarium_sandbox_quarantined_parsers", "Parser versions in quarantine now.",
            registry=r,
        )  # fmt: skip
        self.quarantine_entries = Counter(
            "preservarium_sandbox_quarantine_entries", "Times a parser version was quarantined.",
            ["parser"], registry=r,
        )  # fmt: skip
        self.stream_batch = Histogram(
            "preservarium_sandbox_stream_batch_items",
            "Parse requests carried by one ParseStream message (1 when idle, more under load).",
            buckets=BATCH_BUCKETS, registry=r,
        )  # fmt: skip
        self.worker_batch = Histogram(
            "preservarium_sandbox_worker_batch_jobs",
            "Jobs handed to a worker process in one frame (one parser version a frame).",
            buckets=BATCH_BUCKETS, registry=r,
        )  # fmt: skip

        self.child = LabelCache().child

    def source_lookup(self, hit: bool) -> None:
        """Count a catalog lookup."""
        self.child(self.cache, "source", "hit" if hit else "miss").inc()
