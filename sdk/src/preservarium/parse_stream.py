"""Parse over one long-lived bidirectional stream: the gateway's hot path to the sandbox.

A unary gRPC call costs the Python client a call object, metadata and a completion per
contact; a message on an open stream costs a write and a read. Requests carry an id and
answers are matched to waiting futures, so many contacts share one stream. A broken
stream fails its waiting calls as `sandbox unavailable` and the next call opens a new one.

Messages follow the group-commit rule: at most MESSAGES_IN_FLIGHT messages are out at a
time, and contacts that arrive meanwhile wait and go together, as one message, when a
slot frees. Idle, a contact goes at once (its message is the only one); busy, the batch
grows with the load by itself, and each message, server callback and worker hand-off
is paid once for the whole batch instead of once per contact.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from typing import Any

import grpc

from preservarium.sandbox.v1 import sandbox_pb2 as pb
from preservarium.supervisor import Supervisor

# Two, not one: with a single message out, the sandbox would sit idle for a round trip
# between answering it and reading the next; a second keeps its next batch in hand.
# More would only split the waiting contacts into smaller batches.
MESSAGES_IN_FLIGHT = 2
# The sandbox reads at most 64 requests of a stream at once, and refuses a message over
# about 1 MiB (its largest legal request) by ending the whole stream: a batch stays well
# under that, and a request bigger than MAX_BATCH_BYTES goes alone, as it always could.
MAX_BATCH_ITEMS = 64
MAX_BATCH_BYTES = 512 * 1024
ITEM_OVERHEAD_BYTES = 16  # an item's id and field tags

BatchObserver = Callable[[int], None]


class StreamBrokenError(Exception):
    """The stream ended or failed; `reason` says how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Message:
    """One sent message: its slot is freed by its first answer, or once every one of its
    requests was given up (a batch of runaways must not hold the slot past their time)."""

    __slots__ = ("open", "released")

    def __init__(self, size: int) -> None:
        self.open = size
        self.released = False


class ParseStream:
    """One open ParseStream call and the requests waiting on it."""

    def __init__(
        self,
        stub: Any,
        *,
        supervisor: Supervisor | None = None,
        on_batch: BatchObserver | None = None,
    ) -> None:
        self._call = stub.ParseStream()
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[pb.ParseResponse]] = {}
        self._queued: dict[int, pb.ParseRequest] = {}  # not sent yet, in arrival order
        self._sent: dict[int, _Message] = {}  # sent and not answered yet
        self._free = MESSAGES_IN_FLIGHT
        self._wake = asyncio.Event()
        self._on_batch = (lambda size: None) if on_batch is None else on_batch
        self.broken: str | None = None
        supervisor = supervisor or Supervisor()
        self._reader = supervisor.spawn("parse-stream-reader", self._read)
        self._writer = supervisor.spawn("parse-stream-writer", self._write)

    async def request(self, request: pb.ParseRequest, timeout_s: float) -> pb.ParseResponse:
        """Send one request and wait for its answer, at most `timeout_s` seconds.

        Raises StreamBrokenError when the stream fails, TimeoutError past the deadline.
        """
        if self.broken is not None:
            raise StreamBrokenError(self.broken)
        number = next(self._ids)
        future: asyncio.Future[pb.ParseResponse] = asyncio.get_running_loop().create_future()
        self._waiting[number] = future
        self._queued[number] = request
        if self._free:
            self._wake.set()
        try:
            async with asyncio.timeout(timeout_s):
                return await future
        finally:
            self._give_up(number)

    def _give_up(self, number: int) -> None:
        """Forget a request that was answered, timed out or was cancelled."""
        self._waiting.pop(number, None)
        self._queued.pop(number, None)
        message = self._sent.pop(number, None)
        if message is not None:
            message.open -= 1
            if message.open == 0:
                self._release(message)

    def _release(self, message: _Message) -> None:
        if not message.released:
            message.released = True
            self._free += 1
            if self._queued:
                self._wake.set()

    def _next_batch(self) -> pb.ParseStreamRequest:
        batch = pb.ParseStreamRequest()
        size = 0
        message = _Message(0)
        for number in list(self._queued):
            request = self._queued[number]
            size += request.ByteSize() + ITEM_OVERHEAD_BYTES
            if message.open and (message.open >= MAX_BATCH_ITEMS or size > MAX_BATCH_BYTES):
                break
            del self._queued[number]
            batch.items.add(id=number, request=request)
            self._sent[number] = message
            message.open += 1
        return batch

    async def _write(self) -> None:
        if self.broken is not None:  # restarted after a failure: this call is over
            return
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._free and self._queued:
                    self._free -= 1
                    batch = self._next_batch()
                    self._on_batch(len(batch.items))
                    await self._call.write(batch)
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError) as exc:
            self._break(f"stream write failed: {exc}")
        except asyncio.CancelledError:
            self._break("the stream was closed")
            raise
        except Exception as exc:
            self._break(f"the stream writer failed: {exc!r}")
            raise

    async def _read(self) -> None:
        if self.broken is not None:  # restarted after a failure: this call is over
            return
        reason = "the sandbox closed the stream"
        try:
            async for item in self._call:
                message = self._sent.get(item.id)
                if message is not None:
                    self._release(message)  # the sandbox has this batch in hand
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
        """Cancel the call and stop reading and writing; idempotent."""
        self._break("the stream was closed")
        for task in (self._writer, self._reader):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
