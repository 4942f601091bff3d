"""Parse over one long-lived bidirectional stream: the gateway's hot path to the sandbox.

A unary gRPC call costs the Python client a call object, metadata and a completion per
contact; a message on an open stream costs a write and a read. Requests carry an id and
answers are matched to waiting futures, so many contacts share one stream. A broken
stream fails its waiting calls as `sandbox unavailable` and the next call opens a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any

import grpc

from preservarium.sandbox.v1 import sandbox_pb2 as pb
from preservarium.supervisor import Supervisor


class StreamBrokenError(Exception):
    """The stream ended or failed; `reason` says how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ParseStream:
    """One open ParseStream call and the requests waiting on it."""

    def __init__(self, stub: Any, *, supervisor: Supervisor | None = None) -> None:
        self._call = stub.ParseStream()
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[pb.ParseResponse]] = {}
        self._write_lock = asyncio.Lock()
        self.broken: str | None = None
        self._reader = (supervisor or Supervisor()).spawn("parse-stream-reader", self._read)

    async def request(self, request: pb.ParseRequest, timeout_s: float) -> pb.ParseResponse:
        """Send one request and wait for its answer, at most `timeout_s` seconds.

        Raises StreamBrokenError when the stream fails, TimeoutError past the deadline.
        """
        if self.broken is not None:
            raise StreamBrokenError(self.broken)
        number = next(self._ids)
        future: asyncio.Future[pb.ParseResponse] = asyncio.get_running_loop().create_future()
        self._waiting[number] = future
        try:
            async with asyncio.timeout(timeout_s):
                async with self._write_lock:
                    await self._call.write(pb.ParseStreamRequest(id=number, request=request))
                return await future
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError) as exc:
            self._break(f"stream write failed: {exc}")
            raise StreamBrokenError(self.broken or "stream failed") from exc
        finally:
            self._waiting.pop(number, None)

    async def _read(self) -> None:
        if self.broken is not None:  # restarted after a failure: this call is over
            return
        reason = "the sandbox closed the stream"
        try:
            async for item in self._call:
                future = self._waiting.get(item.id)
                if future is not None and not future.done():
                    future.set_result(item.response)
        except grpc.aio.AioRpcError as exc:
            reason = f"{exc.code().name}: {exc.details()}"
        except asyncio.CancelledError:
            self._break("the stream was closed")
            raise
        except Exception as exc:
            self._break(f"the stream reader failed: {exc!r}")
            raise
        self._break(reason)

    def _break(self, reason: str) -> None:
        if self.broken is None:
            self.broken = reason
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(StreamBrokenError(self.broken))
        self._call.cancel()

    async def close(self) -> None:
        """Cancel the call and stop reading; idempotent."""
        self._break("the stream was closed")
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
