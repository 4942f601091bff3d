"""`tail --from-beginning`: what a topic already holds, oldest first across partitions.

Kafka orders records within a partition only; a topic has several (the gateway keys
records by device). The backlog is merged by record timestamp, one buffered batch per
partition at a time, so memory stays bounded by the fetch size, not the topic's size.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

FETCH_TIMEOUT_MS = 500
# A partition whose fetches stay empty this long has nothing more to give before its
# end offset (records removed by retention, or transaction markers): stop waiting.
STALL_S = 5.0


async def backlog(consumer: Any) -> AsyncIterator[Any]:
    """Yield every record present when this was called (and any fetched with them), in
    timestamp order across partitions; the consumer then continues after them."""
    partitions = list(consumer.assignment())
    ends: dict[Any, int] = await consumer.end_offsets(partitions)
    buffered: dict[Any, deque[Any]] = {tp: deque() for tp in partitions}
    behind = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
    loop = asyncio.get_running_loop()
    empty_since: dict[Any, float] = {}
    while behind:
        starving = [tp for tp in behind if not buffered[tp]]
        if starving:
            batch = await consumer.getmany(*starving, timeout_ms=FETCH_TIMEOUT_MS)
            for tp, messages in batch.items():
                buffered[tp].extend(messages)
            for tp in starving:
                if buffered[tp]:
                    empty_since.pop(tp, None)
                    continue
                stalled = loop.time() - empty_since.setdefault(tp, loop.time()) > STALL_S
                if stalled or await consumer.position(tp) >= ends[tp]:
                    behind.discard(tp)
            continue
        yield _pop_oldest(buffered)
        behind = {tp for tp in behind if buffered[tp] or await consumer.position(tp) < ends[tp]}
    while any(buffered.values()):  # fetched with the backlog: still in order
        yield _pop_oldest(buffered)


def _pop_oldest(buffered: dict[Any, deque[Any]]) -> Any:
    tp = min(
        (tp for tp, queue in buffered.items() if queue),
        key=lambda tp: (buffered[tp][0].timestamp, tp.partition, buffered[tp][0].offset),
    )
    return buffered[tp].popleft()
