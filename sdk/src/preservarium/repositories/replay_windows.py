"""OSCORE replay windows in SQL, updated by compare-and-set so gateways share them.

Accepting a sequence number reads the window (floor, bitmap, version), checks and
advances it in memory, and writes it back only `WHERE version = :read_version`. A
gateway that lost the race reads again and re-checks, so of two gateways handed the
same message, exactly one accepts it, and a gateway restarted later still refuses it.
Cost per accepted message: one SELECT and one UPDATE in two short transactions (the
write commits before the device is answered); a lost race repeats both.
"""

from __future__ import annotations

from sqlalchemy import select, update

from preservarium.db.models import OscoreReplayWindow
from preservarium.errors import ConflictError, NotFoundError
from preservarium.identity.replay import ReplayWindow
from preservarium.repositories.base import SQLRepository

# Races are between gateways answering the same device at the same instant: a handful
# of retries settles any real one; more means something is wrong.
CAS_ATTEMPTS = 16


class SQLReplayWindowRepository(SQLRepository):
    """The persisted replay window of each OSCORE security context, by kid."""

    async def window(self, kid: bytes) -> ReplayWindow:
        """The current window of a context; NotFoundError if there is no such context."""
        return (await self._read(kid))[0]

    async def accept(self, kid: bytes, seq: int) -> bool:
        """Record `seq` as seen for the context; False if it was seen (a replay).

        NotFoundError for an unknown kid; ConflictError if the window kept changing
        under this writer (retriable).
        """
        for _ in range(CAS_ATTEMPTS):
            current, version = await self._read(kid)
            if not current.is_fresh(seq):
                return False
            if await self._write(kid, current.seen(seq), version):
                return True
        raise ConflictError(f"the replay window of kid {kid.hex()} kept changing")

    async def _read(self, kid: bytes) -> tuple[ReplayWindow, int]:
        async with self.transaction() as session:
            row = (
                await session.execute(
                    select(
                        OscoreReplayWindow.floor,
                        OscoreReplayWindow.bitmap,
                        OscoreReplayWindow.version,
                    ).where(OscoreReplayWindow.kid == kid.hex())
                )
            ).one_or_none()
        if row is None:
            raise NotFoundError(f"no OSCORE context has kid {kid.hex()}")
        floor, bitmap, version = row
        return ReplayWindow(floor, bitmap), version

    async def _write(self, kid: bytes, window: ReplayWindow, version: int) -> bool:
        async with self.transaction() as session:
            result = await session.execute(
                update(OscoreReplayWindow)
                .where(OscoreReplayWindow.kid == kid.hex(), OscoreReplayWindow.version == version)
                .values(floor=window.floor, bitmap=window.bitmap, version=version + 1)
            )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]
