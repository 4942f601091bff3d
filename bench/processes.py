"""Child processes of the benchmark: started with an environment, probed, stopped, measured."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from preservarium_tools import coapwire as cw

BIN = Path(sys.executable).parent


class Child:
    """One child process in its own process group."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            argv, env={**os.environ, **env}, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_mb(self) -> float:
        """Resident set size now, in MiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.process.wait()
        self._log.close()


async def wait_for_coap(port: int, *, timeout_s: float = 30) -> None:
    """Until something answers CoAP on 127.0.0.1:port."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with cw.CoapClient("127.0.0.1", port, timeout_s=0.5) as client:
        while True:
            try:
                await client.call(cw.GET, "/.well-known/core")
                return
            except TimeoutError:
                if loop.time() > deadline:
                    raise


async def wait_for_grpc_health(address: str, *, timeout_s: float = 30) -> None:
    """Until the gRPC health service at `address` says SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if loop.time() > deadline:
                raise TimeoutError(f"no gRPC health at {address}")
            await asyncio.sleep(0.1)


async def run_load(spec: str, *, module: str = "bench.loadgen") -> dict[str, Any]:
    """Run a load generator in its own process; return its JSON report."""
    import json

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    out, _ = await process.communicate(spec.encode())
    if process.returncode != 0:
        raise RuntimeError(f"load generator failed ({process.returncode})")
    report: dict[str, object] = json.loads(out)
    return report
