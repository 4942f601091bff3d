"""Is a service of the stack ready? Probes, and waiting for one while watching the process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from preservarium.children import Child
from preservarium.settings import HostPort

from preservarium_tools import coapwire
from preservarium_tools.embedded.errors import ChildExitedError, NotReadyError

Probe = Callable[[], Awaitable[bool]]
PROBE_INTERVAL_S = 0.1
PROBE_TIMEOUT_S = 1.0
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def local(address: HostPort) -> HostPort:
    """The address to reach a server bound to `address` from this host."""
    return HostPort(_WILDCARDS.get(address.host, address.host), address.port)


def grpc_target(address: HostPort) -> str:
    """`host:port` as gRPC spells it (IPv6 hosts in brackets)."""
    host = f"[{address.host}]" if ":" in address.host else address.host
    return f"{host}:{address.port}"


async def tcp_accepting(address: HostPort) -> bool:
    """True when something accepts TCP connections on `address`."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            _, writer = await asyncio.open_connection(address.host, address.port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def sandbox_serving(address: HostPort) -> bool:
    """True when the gRPC health service at `address` answers SERVING."""
    async with grpc.aio.insecure_channel(grpc_target(address)) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = await stub.Check(
                health_pb2.HealthCheckRequest(service=""), timeout=PROBE_TIMEOUT_S
            )
        except grpc.aio.AioRpcError:
            return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


async def gateway_answering(address: HostPort) -> bool:
    """True when a CoAP server at `address` answers GET /.well-known/core with 2.05."""
    async with coapwire.CoapClient(address.host, address.port) as client:
        try:
            answer = await client.call(
                coapwire.GET, "/.well-known/core", timeout_s=PROBE_TIMEOUT_S / 2
            )
        except TimeoutError:
            return False
    return answer.dotted_code == "2.05"


async def _until_true(probe: Probe) -> None:
    # Polling is the point: the service is another process, no event can tell us.
    while not await probe():  # noqa: ASYNC110
        await asyncio.sleep(PROBE_INTERVAL_S)


async def wait_ready(
    child: Child, exited: asyncio.Task[int | None], probe: Probe, *, timeout_s: float
) -> None:
    """Return once `probe` says yes; raise if the child exits first or time runs out."""
    polling = asyncio.create_task(_until_true(probe))
    try:
        done, _ = await asyncio.wait(
            {polling, exited}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        polling.cancel()
        await asyncio.gather(polling, return_exceptions=True)
    if exited in done:
        raise ChildExitedError(child.name, exited.result(), child.last_lines)
    if polling not in done:
        raise NotReadyError(child.name, timeout_s, child.last_lines)
    polling.result()
