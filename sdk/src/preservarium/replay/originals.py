"""What was published at the time: the original `uplink.parsed` / `uplink.failed` record
of each uplink id, and the uplinks a given replay already published.

Both topics are read from the window's start to their end as the replay begins: the
outcome of an uplink is written just after its raw record. Records stamped `replay` are
replays, never originals; those stamped with the resumed replay's id tell which uplinks
it published before it was interrupted (even past its last checkpoint).

Memory: one entry per uplink of the device type in the window (the whole record for a
dry run, which diffs against it; the device id and outcome otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer

from preservarium.contract.encoding import decode_record
from preservarium.replay import topics
from preservarium.replay.uplinks import Original, replay_stamp

BATCH = 2000


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
    replay_id: str | None,
    whole: bool,
) -> OriginalIndex:
    """Read both outcome topics from `since_ms` to their current end."""
    found = OriginalIndex()
    for topic, ok in ((parsed_topic, True), (failed_topic, False)):
        # A consumer per topic: once assigned, a consumer's metadata covers only what it
        # was assigned, and the next topic's partitions would not be known.
        reader = topics.consumer(bootstrap)
        try:  # stopped even when cancelled while it starts
            await reader.start()
            await _index_topic(reader, topic, ok, found, device_type, since_ms, replay_id, whole)
        finally:
            await reader.stop()
    return found


async def _index_topic(
    reader: AIOKafkaConsumer,
    topic: str,
    ok: bool,
    found: OriginalIndex,
    device_type: str,
    since_ms: int,
    replay_id: str | None,
    whole: bool,
) -> None:
    spans, _ = await topics.spans(reader, topic, since_ms, None)
    async for batch in topics.read(reader, topic, spans, batch=BATCH):
        for item in batch:
            if item.timestamp >= since_ms:
                found.take(item.value, ok, device_type=device_type, replay_id=replay_id,
                           whole=whole)  # fmt: skip
