"""Last seen: when each device's contact was last delivered, written in batches.

The contact path only writes the time into a dict (`seen`, O(1), no I/O); a supervised
loop flushes the devices seen since the previous flush in one batched upsert every
`flush_s`, the newest time winning over what another gateway stored. Memory holds only
the devices seen since the last successful flush, at most `max_entries` of them: a
failed flush keeps its entries for the next one, and past the cap new devices wait for
their next contact after a flush succeeds (counted as dropped).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

from preservarium.errors import RepositoryError
from preservarium.periodic import Periodic
from preservarium.supervisor import Supervisor

from preservarium_gateway.metrics import GatewayMetrics
from preservarium_gateway.types import Clock, LastSeenStore

log = logging.getLogger("preservarium.gateway.last_seen")


class LastSeenRecorder:
    """Holds contact times in memory and flushes them to the store periodically."""

    def __init__(
        self,
        *,
        store: LastSeenStore,
        flush_s: float,
        max_entries: int,
        metrics: GatewayMetrics,
        supervisor: Supervisor,
        clock: Clock = time.time,
    ) -> None:
        self._store = store
        # A wall clock: the times are stored as the devices' last contact.
        self._clock = clock
        self._max_entries = max_entries
        self._metrics = metrics
        self._seen: dict[str, float] = {}
        self._flusher = Periodic(
            self._flush_job, interval_s=flush_s, name="last-seen-flush", supervisor=supervisor
        )
        self._lock = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, device_id: str) -> None:
        """A contact of `device_id` was delivered now (the hot path: one dict write)."""
        seen = self._seen
        if len(seen) < self._max_entries or device_id in seen:
            seen[device_id] = self._clock()
        else:
            self._metrics.last_seen_dropped.inc()

    async def start(self) -> None:
        """Start the periodic flush."""
        self._flusher.start()

    async def stop(self) -> None:
        """Stop the loop (a flush under way finishes), then flush what is held
        (idempotent)."""
        await self._flusher.stop()
        await self.flush()

    async def _flush_job(self) -> None:
        await self.flush()

    async def flush(self) -> bool:
        """Write the devices seen since the last flush; False (entries kept) on failure."""
        async with self._lock:
            batch, self._seen = self._seen, {}
            if not batch:
                return True
            times = {device_id: datetime.fromtimestamp(at, UTC) for device_id, at in batch.items()}
            started = time.perf_counter()
            try:
                await self._store.record_seen(times)
            except asyncio.CancelledError:  # stopped mid-flush: stop() writes them
                self._keep(batch)
                raise
            except RepositoryError as exc:
                self._keep(batch)
                self._metrics.last_seen_flushes.labels("failed").inc()
                log.warning("last-seen flush failed; kept for the next flush",
                            extra={"devices": len(batch), "error": str(exc)})  # fmt: skip
                return False
            self._metrics.last_seen_flushes.labels("ok").inc()
            self._metrics.last_seen_flush_latency.observe(time.perf_counter() - started)
            self._metrics.last_seen_devices.inc(len(batch))
            return True

    def _keep(self, batch: dict[str, float]) -> None:
        """Put a failed batch back under the newer contacts since, within the cap."""
        seen = self._seen
        for device_id, at in batch.items():
            if device_id in seen:
                seen[device_id] = max(seen[device_id], at)
            elif len(seen) < self._max_entries:
                seen[device_id] = at
            else:
                self._metrics.last_seen_dropped.inc()
