"""Batch sizes under load, read from the services' own /metrics histograms.

The gateway counts the contacts each ParseStream message carried, the sandbox the
requests each message brought and the jobs each worker frame held. The figures come from
the same histograms an operator graphs, as a difference between two readings, so that
only the scenario between them counts.
"""

from __future__ import annotations

import asyncio
import urllib.request
from typing import Any

# (service, metric) for each batch-size histogram.
HISTOGRAMS = {
    "gateway_stream_message": ("gateway", "preservarium_gateway_sandbox_batch_contacts"),
    "sandbox_stream_message": ("sandbox", "preservarium_sandbox_stream_batch_items"),
    "worker_frame": ("sandbox", "preservarium_sandbox_worker_batch_jobs"),
}
Reading = dict[str, dict[str, float]]


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text: str = answer.read().decode()
    return text


def _histogram(text: str, name: str) -> dict[str, float]:
    """Cumulative counts by upper bound (`le`), with `count` and `sum`; {} when absent."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            found[bound] = float(line.rsplit(" ", 1)[1])
        elif line.startswith((f"{name}_count ", f"{name}_sum ")):
            key, value = line.split(" ", 1)
            found[key.rsplit("_", 1)[1]] = float(value)
    return found


async def read(ports: dict[str, int]) -> Reading:
    """Every batch histogram now (`ports`: the services' metrics ports)."""
    texts = {service: await asyncio.to_thread(_scrape, port) for service, port in ports.items()}
    return {key: _histogram(texts[service], name) for key, (service, name) in HISTOGRAMS.items()}


def between(before: Reading, after: Reading) -> dict[str, Any]:
    """The distribution of each batch size between two readings: messages, mean size,
    the share of messages with more than one item, and the median and 90th percentile
    (as the histogram's bucket bounds)."""
    out: dict[str, Any] = {}
    for key, now in after.items():
        then = before.get(key, {})
        delta = {bound: value - then.get(bound, 0.0) for bound, value in now.items()}
        count = delta.get("count", 0.0)
        if not count:
            out[key] = {"messages": 0}
            continue
        bounds = sorted((float(b), n) for b, n in delta.items() if b not in ("count", "sum"))
        singles = next((n for bound, n in bounds if bound >= 1), 0.0)
        out[key] = {
            "messages": int(count),
            "items": int(delta["sum"]),
            "mean": delta["sum"] / count,
            "over_one": 1 - singles / count,
            "p50_le": next(b for b, n in bounds if n >= count / 2),
            "p90_le": next(b for b, n in bounds if n >= count * 0.9),
            "buckets": {f"{b:g}": int(n) for b, n in bounds},
        }
    return out


def table(distribution: dict[str, Any]) -> str:
    """The distribution as printed lines."""
    lines = ["batch sizes (full path, window 64):"]
    for key, row in distribution.items():
        if not row["messages"]:
            lines.append(f"  {key}: none recorded")
            continue
        lines.append(
            f"  {key}: {row['messages']} messages, {row['items']} items, "
            f"mean {row['mean']:.2f}, >1 item {100 * row['over_one']:.0f}%, "
            f"p50 <= {row['p50_le']:g}, p90 <= {row['p90_le']:g}"
        )
    return "\n".join(lines)
