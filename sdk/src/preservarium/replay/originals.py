"""What was published at the time: the original `uplink.parsed` / `uplink.failed` record
of each uplink id, and the uplinks a given replay already published.

Both topics are read from the window's start: the outcome of an uplink is written just
after its raw record (the gateway publishes it once the sandbox answered). A new replay
reads them up to ORIGINAL_LAG_S past the window's end, so a window of last week costs a
read of last week, not of everything since; a resumed one reads them to their end, for
the records stamped with its own id, which tell which uplinks it published before it was
interrupted (even past its last checkpoint). Records stamped `replay` are replays, never
originals.

Memory: one entry per uplink of the device type in the window (the whole record for a
dry run, which diffs against it; the device id and outcome otherwise).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer

from preservarium.contract.encoding import decode_record
from preservarium.replay import topics
from preservarium.replay.uplinks import Original, replay_stamp

BATCH = 2000
# How long after its raw record an uplink's outcome may have been published and still be
# found as the original: the gateway publishes it once the sandbox answered (a parser's
# deadline, seconds) and its producer retries for seconds more. One published later is
# `no_original` in a dry run, and a route contact without an original is not replayed.
ORIGINAL_LAG_S = 300.0


@dataclass(slots=True)
class OriginalIndex:
    """Original outcomes by uplink id, and the uplinks one replay has published."""

    outcomes: dict[str, Original] = field(default_factory=dict)
    published: set[str] = field(default_factory=set)
    scanned: int = 0

    def take(self, value: bytes | None, ok: bool, *, device_type: str, replay_id: str | None,
             whole: bool) -> None:  # fmt: skip
        """Index one record of `uplink.parsed` (ok) or `uplink.failed`."""
        self.scanned += 1
        record = decode_record(value)
        if record is None or record.get("device_type") != device_type:
            return
        stamp = replay_stamp(record)
        if stamp is not None:
            if replay_id is not None and stamp.get("id") == replay_id:
                self.published.add(str(stamp.get("of")))
            return
        uplink_id = record.get("id")
        if isinstance(uplink_id, str):
            device_id = record.get("device_id")
            kept = record if whole else {"error": record.get("error")}
            named = device_id if isinstance(device_id, str) else None
            self.outcomes[uplink_id] = Original(ok, named, kept)


async def index(
    bootstrap: str,
    *,
    parsed_topic: str,
    failed_topic: str,
    device_type: str,
    since_ms: int,
    until_ms: int | None,
    replay_id: str | None,
    whole: bool,
) -> OriginalIndex:
    """Read both outcome topics from `since_ms` to ORIGINAL_LAG_S past `until_ms` (None:
    to their current end)."""
    found = OriginalIndex()
    bound = None if until_ms is None else until_ms + int(ORIGINAL_LAG_S * 1000)
    for topic, ok in ((parsed_topic, True), (failed_topic, False)):
        # A consumer per topic: once assigned, a consumer's metadata covers only what it
        # was assigned, and the next topic's partitions would not be known.
        reader = topics.consumer(bootstrap)
        try:  # stopped even when cancelled while it starts
            await reader.start()
            await _index_topic(reader, topic, ok, found, device_type, (since_ms, bound),
                               replay_id, whole)  # fmt: skip
        finally:
            await reader.stop()
    return found


async def _index_topic(
    reader: AIOKafkaConsumer,
    topic: str,
    ok: bool,
    found: OriginalIndex,
    device_type: str,
    between: tuple[int, int | None],
    replay_id: str | None,
    whole: bool,
) -> None:
    since_ms, bound = between
    spans, _ = await topics.spans(reader, topic, since_ms, bound)
    # A broker without offsets by time (see topics) leaves each span open to the end of
    # its partition: a partition is done once a record past the bound is read there.
    reading = {partition for partition, span in spans.items() if not span.done}
    passed: set[int] = set()
    async with contextlib.aclosing(topics.read(reader, topic, spans, batch=BATCH)) as batches:
        async for batch in batches:
            for item in batch:
                if bound is not None and item.timestamp > bound:
                    passed.add(item.partition)
                elif item.timestamp >= since_ms:
                    found.take(item.value, ok, device_type=device_type, replay_id=replay_id,
                               whole=whole)  # fmt: skip
            if passed >= reading:
                return
