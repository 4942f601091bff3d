"""Second adversarial review: hostile callers of the gRPC API and hostile parser code,
through the real service."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
from preservarium.repositories import SQLParserRepository
from preservarium.sandbox.v1 import sandbox_pb2 as pb
from preservarium.sandbox.v1 import sandbox_pb2_grpc as pb_grpc
from preservarium.sandbox_client import SandboxClient
from preservarium_sandbox.limits import Limits
from preservarium_sandbox.server import SandboxServer

from tests.sandbox.conftest import contact, sandbox_config, wait_for_version

# Runs about 50 ms: far under its 2 s limit however loaded the machine, far over the
# time the server needs to read a request.
SLOW = (
    "def parse(payload, metadata):\n"
    "    total = 0\n"
    "    for i in range(300000):\n"
    "        total += i\n"
    "    return {'n': total}\n"
)
STREAM_CAP = 4
FLOOD = 120


class TestStreams:
    """One ParseStream cannot make the server hold more than its cap of requests."""

    async def test_a_flooded_stream_is_read_no_faster_than_it_is_answered(
        self, sandbox_db: str, parsers: SQLParserRepository
    ) -> None:
        limits = Limits(timeout_ms=2000, max_stream_in_flight=STREAM_CAP)
        config = sandbox_config(sandbox_db, workers=1, limits=limits)
        name = f"slow{uuid.uuid4().hex[:8]}"
        async with SandboxServer(config), SandboxClient(config.listen) as client:
            await parsers.upload(name, SLOW)
            await wait_for_version(client, name, 1)
            baseline = len(asyncio.all_tasks())
            request = pb.ParseStreamRequest(request=pb.ParseRequest(**_parse_fields(name)))
            async with grpc.aio.insecure_channel(config.listen) as channel:
                stub: Any = pb_grpc.ParserSandboxStub(channel)  # type: ignore[no-untyped-call]
                call = stub.ParseStream(_flood(request, FLOOD))
                most = 0
                for _ in range(20):  # one second: the server has read all it will
                    await asyncio.sleep(0.05)
                    most = max(most, len(asyncio.all_tasks()) - baseline)
                call.cancel()
        # A handful of tasks belong to the call itself (gRPC's, the reader, the writer).
        assert most < STREAM_CAP + 12, most


def _parse_fields(device_type: str) -> dict[str, Any]:
    return {"device_type": device_type, "contact": contact(device_type).to_proto()}


async def _flood(request: pb.ParseStreamRequest, count: int) -> AsyncIterator[Any]:
    for number in range(count):
        yield pb.ParseStreamRequest(id=number + 1, request=request.request)


class TestMetrics:
    """A caller cannot grow the metrics without bound with names of its choosing."""

    async def test_unknown_device_types_share_one_metric_label(
        self, client: SandboxClient, sandbox: SandboxServer, parsers: SQLParserRepository
    ) -> None:
        before = _parser_labels(sandbox)
        for n in range(50):
            await client.parse(contact(f"nobody-{uuid.uuid4().hex}-{n}"))
        assert len(_parser_labels(sandbox) - before) <= 1


def _parser_labels(sandbox: SandboxServer) -> set[str]:
    return {
        sample.labels["parser"]
        for metric in sandbox.metrics.registry.collect()
        for sample in metric.samples
        if "parser" in sample.labels
    }
