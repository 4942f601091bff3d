"""The lease a replay runner holds on its stored replay, so that two runners (two CLIs,
or the API's background task and a CLI) never run the same replay at once.

The runner takes the lease before it reads anything (a compare-and-set on the row),
renews it every third of its length while it runs, and writes its checkpoints and its
end only while it holds it. Before publishing a batch it makes sure at least half the
lease is left: a batch is published well within that (the producer gives up on a send
after 15 s, half the default lease), so a runner that stalled, lost its lease and woke
up publishes nothing more, and whoever took over after the expiry finds every result
the first one published on the topics (and skips those uplinks) before it starts.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

from preservarium.errors import ConflictError
from preservarium.periodic import Periodic
from preservarium.replay.errors import LEASE_LOST, NOT_RESUMABLE, REPLAY_RUNNING, ReplayError
from preservarium.repositories.replays import (
    Holder,
    LeaseHeldError,
    LeaseLostError,
    ReplayRecord,
    SQLReplayRepository,
)
from preservarium.supervisor import Supervisor

log = logging.getLogger("preservarium.replay")
LEASE_S = 30.0


class ReplayLease:
    """One run's hold on a stored replay: `acquire`, then `kept()` around the run."""

    def __init__(
        self,
        repository: SQLReplayRepository,
        replay_id: str,
        *,
        lease_s: float = LEASE_S,
        supervisor: Supervisor | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.replay_id = replay_id
        self.holder = Holder.here()
        self.lease_s = lease_s
        self.lost = False
        self._repository = repository
        self._supervisor = supervisor
        self._clock = clock
        self._renewed_at = clock()

    async def acquire(self) -> ReplayRecord:
        """Hold the replay; ReplayError `replay_running` (naming the holder and its
        lease) while another runner holds it, `not_resumable` once it is done."""
        started = self._clock()
        try:
            record = await self._repository.acquire(self.replay_id, self.holder, self.lease_s)
        except LeaseHeldError as exc:
            raise ReplayError(str(exc), kind=REPLAY_RUNNING) from exc
        except ConflictError as exc:
            raise ReplayError(str(exc), kind=NOT_RESUMABLE) from exc
        self._renewed_at = started
        return record

    @contextlib.asynccontextmanager
    async def kept(self) -> AsyncIterator[None]:
        """Renew the lease in the background while the block runs."""
        renewal = Periodic(
            self._renew_quietly, interval_s=self.lease_s / 3, name="replay-lease",
            supervisor=self._supervisor,
        )  # fmt: skip
        renewal.start()
        try:
            yield
        finally:
            await renewal.stop()

    async def renew(self) -> None:
        """Extend the lease; ReplayError `lease_lost` if another runner took it."""
        if self.lost:
            raise self._lost()
        started = self._clock()
        try:
            await self._repository.renew(self.replay_id, self.holder, self.lease_s)
        except LeaseLostError as exc:
            self.lost = True
            raise self._lost() from exc
        self._renewed_at = started

    async def fence(self) -> None:
        """Before publishing: the lease is still held with at least half of it left
        (renewed now if need be); ReplayError `lease_lost` otherwise."""
        if self.lost or self._clock() - self._renewed_at > self.lease_s / 2:
            await self.renew()

    async def checkpoint(self, replay: ReplayRecord) -> None:
        """Store the replay's progress while holding it; this renews the lease too."""
        started = self._clock()
        try:
            await self._repository.checkpoint(replay, holder=self.holder, lease_s=self.lease_s)
        except LeaseLostError as exc:
            self.lost = True
            raise self._lost() from exc
        self._renewed_at = started

    async def finish(self, replay: ReplayRecord, status: str, error: str | None = None) -> None:
        """Store how the replay ended and release it; nothing once the lease was lost
        (the replay is another runner's now)."""
        if self.lost:
            return
        try:
            await self._repository.finish(replay, status, error, holder=self.holder)
        except LeaseLostError:
            self.lost = True
            log.warning("replay lease lost before its end was stored",
                        extra={"replay_id": self.replay_id, "status": status})  # fmt: skip

    def _lost(self) -> ReplayError:
        return ReplayError(
            f"replay {self.replay_id} was taken over by another runner after this one's "
            "lease expired (it stalled for longer than the lease): it stopped here",
            kind=LEASE_LOST,
        )

    async def _renew_quietly(self) -> None:
        """The background renewal: a failure is logged by Periodic, and the next
        fence or checkpoint finds out."""
        if not self.lost:
            await self.renew()
