"""/api/v1/streams/{raw|parsed|failed|status}: records as they are written, as Server-Sent
Events; and /api/v1/uplinks: the newest raw uplinks of a type.

Each stream has a Kafka consumer of its own, at the end of the topic, without a group;
it is closed when the client goes. Streams are bounded in number (503 beyond) and read
at the client's pace: Kafka keeps what a slow client has not taken yet.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from prometheus_client import Gauge
from starlette.types import Receive, Scope, Send

from preservarium_gateway.api.auth import READ, still_active
from preservarium_gateway.api.context import ApiContext, context_of
from preservarium_gateway.api.kafka_reads import TopicRecord, TopicTail, assigned, newest
from preservarium_gateway.api.problems import Problem

router = APIRouter(tags=["streams"])
POLL_S = 0.5
BATCH = 100


class StreamName(StrEnum):
    """The streams: the uplink topics and command.status."""

    RAW = "raw"
    PARSED = "parsed"
    FAILED = "failed"
    STATUS = "status"


def _topic(context: ApiContext, name: StreamName) -> str:
    topics = context.topics
    by_name = {
        StreamName.RAW: topics.raw,
        StreamName.PARSED: topics.parsed,
        StreamName.FAILED: topics.failed,
        StreamName.STATUS: topics.command_status,
    }
    return by_name[name]


def matches(value: dict[str, Any], device: str | None, device_type: str | None) -> bool:
    """True when a record passes the filters. Status records carry no type: `type` does
    not filter them."""
    if device is not None and value.get("device_id") != device:
        return False
    if device_type is None or "device_type" not in value:
        return True
    return bool(value.get("device_type") == device_type)


def event(name: StreamName, record: TopicRecord) -> bytes:
    """One Server-Sent Event: id `partition:offset`, the stream's name, the record."""
    data = json.dumps(record.value, ensure_ascii=False, separators=(",", ":"))
    return f"id: {record.event_id}\nevent: {name.value}\ndata: {data}\n\n".encode()


class StreamSlots:
    """How many streams may be open at once, in all and per token.

    Each stream holds a Kafka consumer. Without a share per token, one token (a script
    opening streams in a loop, or a leaked read token) could take every slot and lock
    the console out for everyone else.
    """

    def __init__(self, limit: int, *, per_token: int | None = None) -> None:
        self.limit = limit
        self.per_token = per_token if per_token is not None else max(1, limit // 4)
        self.open = 0
        self._by_token: dict[str, int] = {}

    def take(self, token: str) -> None:
        """Count one more stream of `token`; a Problem (503, or 429 for the token's own
        share) when no slot is free."""
        if self.open >= self.limit:
            raise Problem(503, "too-many-streams",
                          f"{self.limit} streams are open; try again later",
                          headers={"Retry-After": "5"})  # fmt: skip
        held = self._by_token.get(token, 0)
        if held >= self.per_token:
            raise Problem(429, "too-many-streams-for-token",
                          f"token {token!r} has {held} streams open, its share of "
                          f"{self.per_token}; close one first",
                          headers={"Retry-After": "5"})  # fmt: skip
        self._by_token[token] = held + 1
        self.open += 1

    def give_back(self, token: str) -> None:
        """One stream of `token` fewer."""
        self.open -= 1
        held = self._by_token.get(token, 0) - 1
        if held > 0:
            self._by_token[token] = held
        else:
            self._by_token.pop(token, None)


@router.get("/streams/{name}", dependencies=[READ], summary="Follow a topic (Server-Sent Events)",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})  # fmt: skip
async def stream(
    request: Request,
    name: StreamName,
    device: Annotated[str | None, Query(description="Only this device.")] = None,
    type: Annotated[str | None, Query(description="Only this device type.")] = None,
) -> StreamingResponse:
    """Records from now on, one event each (`event:` the stream's name, `data:` the record
    as written to Kafka). A comment line is sent at once, when the stream is positioned,
    and every few seconds while nothing comes."""
    context = context_of(request)
    slots: StreamSlots = request.app.state.stream_slots
    token: str = request.state.caller.name  # set by the READ dependency
    slots.take(token)
    reader = assigned(context.kafka_bootstrap, _topic(context, name),
                      timeout_s=context.limits.kafka_timeout_s)  # fmt: skip

    async def close() -> None:
        await reader.__aexit__(None, None, None)
        slots.give_back(token)

    try:
        tail = TopicTail(*await reader.__aenter__())
    except BaseException:
        slots.give_back(token)
        raise
    try:
        await tail.start()
    except BaseException:
        await close()
        raise

    recheck_s = context.limits.token_recheck_s

    async def events() -> AsyncIterator[bytes]:
        yield b": stream open\n\n"
        quiet_s = 0.0
        checked_at = asyncio.get_running_loop().time()
        while not await request.is_disconnected():
            now = asyncio.get_running_loop().time()
            if now - checked_at >= recheck_s:
                checked_at = now
                if not await still_active(request):  # revoked since the stream opened
                    yield b": token revoked\n\n"
                    return
            records = await tail.poll(timeout_s=POLL_S, max_records=BATCH)
            sent = [event(name, r) for r in records if matches(r.value, device, type)]
            for chunk in sent:
                yield chunk
            quiet_s = 0.0 if sent else quiet_s + POLL_S
            if quiet_s >= context.limits.heartbeat_s:
                quiet_s = 0.0
                yield b": keep-alive\n\n"

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return EventStream(events(), on_close=close, gauge=context.metrics.api_streams,
                       headers=headers)  # fmt: skip


class EventStream(StreamingResponse):
    """A text/event-stream response whose resources are released however it ends (even
    when the client went before its first byte, and the body was never read)."""

    def __init__(
        self, body: AsyncIterator[bytes], *, on_close: Callable[[], Awaitable[None]],
        gauge: Gauge, headers: dict[str, str],
    ) -> None:  # fmt: skip
        super().__init__(body, media_type="text/event-stream", headers=headers)
        self._on_close = on_close
        self._gauge = gauge

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._gauge.inc()
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._gauge.dec()
            await asyncio.shield(self._on_close())


@router.get("/uplinks", dependencies=[READ], summary="The newest raw uplinks of a type")
async def uplinks(
    request: Request,
    type: Annotated[str, Query(description="The device type.")],
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    device: Annotated[str | None, Query(description="Only this device.")] = None,
) -> list[dict[str, Any]]:
    """Up to `limit` `uplink.raw` records of `type`, newest first (found among the newest
    records of the topic): what "run on the last N uplinks" runs a parser on."""
    context = context_of(request)
    found = await newest(
        context.kafka_bootstrap, context.topics.raw,
        keep=lambda value: matches(value, device, type) and value.get("device_type") == type,
        count=limit, scan=context.limits.uplinks_scan, timeout_s=context.limits.kafka_timeout_s,
    )  # fmt: skip
    return [record.value for record in found]
