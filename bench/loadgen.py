"""A raw-UDP CoAP load generator with a bounded in-flight window (closed loop), or at a
fixed arrival rate (open loop: spec `rate`, contacts/s).

Runs in its own process (`python -m bench.loadgen < SPEC_JSON`) so that it never shares a
core's event loop with what it measures. Datagrams are pre-encoded; only the message id
and token are patched per request. Requests spread over many sockets (many endpoints, as
real devices are), so message ids never repeat within the server's deduplication window.

A closed loop sends the next request when an answer comes: it measures what the server
can do at saturation, and its latency grows with the window. An open loop sends on a
schedule whatever the answers, as independent devices do: its latency is what a device
sees at that load (a request's time counts from when it was due, so a generator that
falls behind shows up as latency instead of hiding it).
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from preservarium_tools import coapwire as cw

SOCKETS = 64


@dataclass
class Stats:
    """Latencies and codes per label."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    codes: dict[str, dict[str, int]] = field(default_factory=dict)
    timeouts: dict[str, int] = field(default_factory=dict)

    def record(self, label: str, code: str, seconds: float) -> None:
        self.latencies.setdefault(label, []).append(seconds)
        by_code = self.codes.setdefault(label, {})
        by_code[code] = by_code.get(code, 0) + 1


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of values, in the same unit."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, generator: LoadGenerator) -> None:
        self.generator = generator
        self.transport: asyncio.DatagramTransport | None = None
        self.mid = int.from_bytes(os.urandom(2), "big")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) >= 4 and data[0] >> 4 & 3 == cw.CON and self.transport is not None:
            # A separate response: acknowledge it as a device would, or the server holds
            # every later confirmable message to this endpoint back (NSTART = 1).
            self.transport.sendto(bytes([0x60, 0]) + data[2:4])
        self.generator.answer(data)


class LoadGenerator:
    """Keeps `window` CON requests in flight for `duration_s`, over a mix of templates."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.host, port = spec["target"].rsplit(":", 1)
        self.port = int(port)
        self.window = int(spec["window"])
        # Open loop: this many requests per second on a schedule (None: closed loop).
        self.rate = float(spec["rate"]) if spec.get("rate") else None
        self.sent = 0  # requests sent by the open loop (spec `rate`)
        self.duration_s = float(spec["duration_s"])
        self.timeout_s = float(spec.get("timeout_s", 2.0))
        # templates: [label, method code, path, [payload hex...]]
        self.templates = [
            (t["label"], cw.encode(cw.request(
                t.get("code", cw.POST), t["path"], mid=0, token=b"\0\0\0\0",
                payload=bytes.fromhex(p)))) for t in spec["templates"] for p in t["payloads"]
        ]  # fmt: skip
        weights = spec.get("mix") or [1] * len(self.templates)
        self.schedule = [i for i, w in enumerate(weights) for _ in range(int(w))] or [0]
        self.stats = Stats()
        self.pending: dict[bytes, tuple[str, float, asyncio.Future[None]]] = {}
        self.sent = 0

    def answer(self, data: bytes) -> None:
        if len(data) < 8 or data[0] & 0x0F != 4:
            return
        token = data[4:8]
        entry = self.pending.pop(token, None)
        if entry is None:
            return
        label, started, done = entry
        self.stats.record(label, cw.dotted(data[1]), time.perf_counter() - started)
        if not done.done():
            done.set_result(None)

    async def _one(self, sock: _Socket, index: int, counter: int, due: float | None = None) -> None:
        label, template = self.templates[index]
        sock.mid = (sock.mid + 1) & 0xFFFF
        token = struct.pack(">I", counter & 0xFFFFFFFF)
        datagram = template[:2] + struct.pack(">H", sock.mid) + token + template[8:]
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending[token] = (label, time.perf_counter() if due is None else due, done)
        assert sock.transport is not None
        sock.transport.sendto(datagram)
        try:
            await asyncio.wait_for(done, self.timeout_s)
        except TimeoutError:
            self.pending.pop(token, None)
            self.stats.timeouts[label] = self.stats.timeouts.get(label, 0) + 1

    async def run(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        sockets = []
        for _ in range(SOCKETS):
            _, protocol = await loop.create_datagram_endpoint(
                lambda: _Socket(self), remote_addr=(self.host, self.port)
            )
            sockets.append(protocol)
        started = time.perf_counter()
        deadline = started + self.duration_s
        counter = 0

        async def lane(lane_number: int) -> None:
            nonlocal counter
            while time.perf_counter() < deadline:
                counter += 1
                index = self.schedule[counter % len(self.schedule)]
                await self._one(sockets[(counter + lane_number) % SOCKETS], index, counter)

        if self.rate is None:
            await asyncio.gather(*(lane(n) for n in range(self.window)))
        else:
            await self._open_loop(sockets, started, self.rate)
        elapsed = time.perf_counter() - started
        for sock in sockets:
            assert sock.transport is not None
            sock.transport.close()
        return self.report(elapsed)

    async def _open_loop(self, sockets: list[_Socket], started: float, rate: float) -> None:
        """Send request n at `started + n / rate`, whatever the answers."""
        total = int(self.duration_s * rate)
        self.sent = total
        flying: set[asyncio.Task[None]] = set()
        for counter in range(1, total + 1):
            due = started + (counter - 1) / rate
            if (ahead := due - time.perf_counter()) > 0:
                await asyncio.sleep(ahead)
            index = self.schedule[counter % len(self.schedule)]
            task = asyncio.create_task(self._one(sockets[counter % SOCKETS], index, counter, due))
            flying.add(task)
            task.add_done_callback(flying.discard)
        await asyncio.gather(*flying)

    def report(self, elapsed: float) -> dict[str, Any]:
        labels = {}
        total = 0
        for label, values in self.stats.latencies.items():
            total += len(values)
            labels[label] = {
                "count": len(values),
                "codes": self.stats.codes.get(label, {}),
                "timeouts": self.stats.timeouts.get(label, 0),
                "p50_ms": percentile(values, 0.50) * 1000,
                "p99_ms": percentile(values, 0.99) * 1000,
                "rate": len(values) / elapsed,
            }
        for label, lost in self.stats.timeouts.items():
            nothing = float("nan")
            labels.setdefault(label, {"count": 0, "codes": {}, "timeouts": lost,
                                      "p50_ms": nothing, "p99_ms": nothing, "rate": 0})  # fmt: skip
        every = [v for values in self.stats.latencies.values() for v in values]
        return {
            "elapsed_s": elapsed,
            "window": self.window,
            "offered_rate": self.rate,
            # Requests sent: in a closed loop every one is answered or timed out; in an
            # open loop, answered + timeouts falling short of it would be a loss.
            "sent": self.sent
            if self.rate is not None
            else total + sum(self.stats.timeouts.values()),
            "answered": total,
            "timeouts": sum(self.stats.timeouts.values()),
            "rate": total / elapsed,
            "p50_ms": percentile(every, 0.50) * 1000,
            "p99_ms": percentile(every, 0.99) * 1000,
            "labels": labels,
        }


def main() -> None:
    """`python -m bench.loadgen < SPEC_JSON`: run, print the report as JSON."""
    spec = json.loads(sys.stdin.read())
    try:
        import uvloop  # type: ignore[import-not-found]

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(LoadGenerator(spec).run())))


if __name__ == "__main__":
    main()
