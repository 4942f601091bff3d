"""Scenario: does an idle operator API cost the CoAP hot path anything?

Two gateway processes on the same database, broker and sandbox, one with the API on
(listening, no client) and one with it off, loaded in turn (off, on, off, on) with the
same contacts: throughput with a window of requests in flight, and sequential latency.
"""

from __future__ import annotations

import socket
import statistics
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.processes import BIN, Child, wait_for_coap

ROUNDS = 2
Load = Callable[[int, int, float], Awaitable[dict[str, Any]]]  # (port, window, seconds)


def _free(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def api_on_off(
    work: Path, env: dict[str, str], load: Load, *, window: int, throughput_s: float,
    sequential_s: float,
) -> dict[str, Any]:  # fmt: skip
    """Per variant (`api_off`, `api_on`): the median rate and p50/p99 of each run kind."""
    ports = {"api_off": _free(socket.SOCK_DGRAM), "api_on": _free(socket.SOCK_DGRAM)}
    api_port = _free()
    children = []
    try:
        for name, port in ports.items():
            listen = f"127.0.0.1:{api_port}" if name == "api_on" else ""
            # No DTLS port: the bench's main gateway holds it, and it is not shared.
            child_env = {**env, "PRESERVARIUM_COAP_BIND": f"127.0.0.1:{port}",
                         "PRESERVARIUM_API_LISTEN": listen,
                         "PRESERVARIUM_COAPS_BIND": ""}  # fmt: skip
            children.append(Child(name, [str(BIN / "preservarium-gateway")], child_env,
                                  work / f"{name}.log"))  # fmt: skip
        for port in ports.values():
            await wait_for_coap(port)
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {
            name: {"throughput": [], "sequential": []} for name in ports
        }
        for port in ports.values():  # warm both up
            await load(port, window, 3)
        for _ in range(ROUNDS):
            for name, port in ports.items():
                runs[name]["throughput"].append(await load(port, window, throughput_s))
                runs[name]["sequential"].append(await load(port, 1, sequential_s))
    finally:
        for child in reversed(children):
            child.stop()
    return {name: _medians(kinds) for name, kinds in runs.items()}


def _medians(kinds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    keys = ("rate", "p50_ms", "p99_ms", "timeouts")
    return {
        kind: {
            **{key: statistics.median(run[key] for run in results) for key in keys},
            "codes": _codes(results),
        }
        for kind, results in kinds.items()
    }


def _codes(results: list[dict[str, Any]]) -> dict[str, int]:
    """Response codes over every run: a fast answer must also be a success."""
    total: dict[str, int] = {}
    for run in results:
        for label in run["labels"].values():
            for code, count in label["codes"].items():
                total[code] = total.get(code, 0) + count
    return total


def ratios(result: dict[str, Any]) -> dict[str, float]:
    """API on over API off: 1.0 means no measurable cost."""
    on, off = result["api_on"], result["api_off"]
    return {
        "api_on_vs_off_throughput": on["throughput"]["rate"] / off["throughput"]["rate"],
        "api_on_vs_off_sequential_p50": on["sequential"]["p50_ms"] / off["sequential"]["p50_ms"],
    }
