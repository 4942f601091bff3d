"""The sandbox `Parse` RPC alone, and the in-process exec of the same parser as reference."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from preservarium.contract.contact import Contact
from preservarium.sandbox_client import SandboxClient, SandboxUnavailableError

from bench.loadgen import percentile
from bench.workload import expose_protowire


async def parse_rpc(
    address: str, payloads: list[bytes], *, duration_s: float, concurrency: int, streams: int = 0
) -> dict[str, Any]:
    """Parse calls/s and latency with `concurrency` calls in flight.

    A call that errs (a script error, or no answer in time) is counted, not fatal: one
    slow call must not throw away the rest of a benchmark run.
    """
    latencies: list[float] = []
    errors = unavailable = 0
    async with SandboxClient(address, timeout_s=2.0, streams=streams) as client:
        deadline = time.perf_counter() + duration_s
        counter = 0

        async def lane() -> None:
            nonlocal counter, errors, unavailable
            while time.perf_counter() < deadline:
                counter += 1
                contact = Contact(payloads[counter % len(payloads)], "efento", path="m")
                started = time.perf_counter()
                try:
                    response = await client.parse(contact, identify=True)
                except SandboxUnavailableError:
                    unavailable += 1
                    continue
                latencies.append(time.perf_counter() - started)
                errors += response.error is not None

        started = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "concurrency": concurrency, "streams": streams, "calls": len(latencies), "errors": errors,
        "unavailable": unavailable,
        "rate": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000, "p99_ms": percentile(latencies, 0.99) * 1000,
    }  # fmt: skip


def in_process(source: str, payloads: list[bytes], *, duration_s: float) -> dict[str, Any]:
    """The same parser exec'd in this process, no sandbox: identify + parse per call."""
    expose_protowire()
    namespace: dict[str, Any] = {"warn": lambda message: None}
    exec(compile(source, "<efento>", "exec"), namespace)
    latencies: list[float] = []
    deadline = time.perf_counter() + duration_s
    counter = 0
    while time.perf_counter() < deadline:
        counter += 1
        payload = payloads[counter % len(payloads)]
        metadata: dict[str, Any] = {
            "device_id": None, "device_type": "efento", "path": "m", "method": "POST",
            "confirmable": True, "received_at": 1_764_000_000, "query": {},
        }  # fmt: skip
        started = time.perf_counter()
        metadata["device_id"] = namespace["identify"](payload, metadata)
        namespace["parse"](payload, metadata)
        latencies.append(time.perf_counter() - started)
    return {
        "calls": len(latencies),
        "rate": len(latencies) / duration_s,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }
