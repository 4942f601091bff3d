"""The parent's metrics endpoint when the gateway runs several processes.

Prometheus expects one target per gateway host. The parent serves it: its own series
(children running, child exits) and, gathered at each scrape from every child's private
loopback endpoint, the children's series with a `process` label naming the child's index.
`sum without (process) (...)` gives the host's totals; a restarted child's counters
start again from zero, which `rate()` reads as the counter reset it is.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

log = logging.getLogger("preservarium.gateway.processes")
SCRAPE_TIMEOUT_S = 2.0
PROCESS_LABEL = "process"


class ProcessMetrics:
    """What an operator graphs about the gateway's processes, in the parent's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.running = Gauge(
            "preservarium_gateway_processes_running",
            "Gateway processes running now (of PRESERVARIUM_GATEWAY_PROCESSES).",
            registry=registry,
        )
        self.exits = Counter(
            "preservarium_gateway_process_exits",
            "Gateway processes that ended while they should have been serving, by process "
            "index; each is started again after a backoff.",
            [PROCESS_LABEL],
            registry=registry,
        )

    def exited(self, index: int) -> None:
        """Count one unexpected end of process `index`."""
        self.exits.labels(str(index)).inc()


class ChildMetricsCollector:
    """Reads each child's metrics at scrape time and relabels them with its index."""

    def __init__(self, ports: Sequence[int], *, host: str = "127.0.0.1") -> None:
        self._ports = list(ports)
        self._host = host

    def describe(self) -> list[Metric]:
        """Nothing up front: the families are the children's, known only when scraped."""
        return []

    def collect(self) -> Iterable[Metric]:
        """The children's families, merged by name, each sample labelled `process`."""
        merged: dict[str, Metric] = {}
        up = GaugeMetricFamily(
            "preservarium_gateway_process_up",
            "1 when the gateway process answered this scrape, else 0 (starting, restarting).",
            labels=[PROCESS_LABEL],
        )
        for index, port in enumerate(self._ports):
            text = self._scrape(index, port)
            up.add_metric([str(index)], 0.0 if text is None else 1.0)
            if text is not None:
                merge(merged, text, str(index))
        yield up
        yield from merged.values()

    def _scrape(self, index: int, port: int) -> str | None:
        url = f"http://{self._host}:{port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as response:
                body: bytes = response.read()
        except (urllib.error.URLError, OSError) as exc:
            log.debug("gateway process metrics unavailable", extra={"index": index,
                      "reason": str(exc)})  # fmt: skip
            return None
        return body.decode("utf-8", "replace")


def merge(into: dict[str, Metric], text: str, process: str) -> None:
    """Add the families of one child's exposition `text` to `into`, labelled `process`."""
    for family in text_string_to_metric_families(text):
        target = into.get(family.name)
        if target is None:
            target = into[family.name] = Metric(family.name, family.documentation, family.type)
        for sample in family.samples:
            labels = {**sample.labels, PROCESS_LABEL: process}
            target.samples.append(Sample(sample.name, labels, sample.value, sample.timestamp))
