"""OSCORE replay windows in SQL, updated by compare-and-set so gateways share them.

Accepting a sequence number reads the window (floor, bitmap, version), checks and
advances it in memory, and writes it back only `WHERE version = :read_version`. A
gateway that lost the race reads again and re-checks, so of two gateways handed the
same message, exactly one accepts it, and a gateway restarted later still refuses it.
Cost per accepted message: one SELECT and one UPDATE in two short transactions (the
write commits before the device is answered); a lost race repeats both. A gateway that
holds the window it last wrote (`advance` from a `WindowState`) skips the SELECT: its
UPDATE succeeds unless another gateway moved the window, and then it reads and retries.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update

from preservarium.db.models import OscoreReplayWindow
from preservarium.errors import ConflictError, NotFoundError
from preservarium.identity.replay import ReplayWindow
from preservarium.repositories.base import SQLRepository

# Races are between gateways answering the same device at the same instant: a handful
# of retries settles any real one; more means something is wrong.
CAS_ATTEMPTS = 16


@dataclass(frozen=True, slots=True)
class WindowState:
    """A window as stored, with the version a compare-and-set writes against."""

    window: ReplayWindow
    version: int


class SQLReplayWindowRepository(SQLRepository):
    """The persisted replay window of each OSCORE security context, by kid."""

    async def window(self, kid: bytes) -> ReplayWindow:
        """The current window of a context; NotFoundError if there is no such context."""
        return (await self.state(kid)).window

    async def state(self, kid: bytes) -> WindowState:
        """The current window and its version; NotFoundError if there is no such context."""
        window, version = await self._read(kid)
        return WindowState(window, version)

    async def accept(self, kid: bytes, seq: int) -> bool:
        """Record `seq` as seen for the context; False if it was seen (a replay).

        NotFoundError for an unknown kid; ConflictError if the window kept changing
        under this writer (retriable).
        """
        accepted, _ = await self.advance(kid, seq, await self.state(kid))
        return accepted

    async def advance(self, kid: bytes, seq: int, known: WindowState) -> tuple[bool, WindowState]:
        """Record `seq` as seen, starting from a window read (or written) earlier.

        Returns whether it was fresh (False: a replay, seen by this gateway or another)
        and the newest window this writer knows. A stale `known` costs a re-read, never
        a wrong answer: the write only lands on the version it was computed from.
        NotFoundError once the context is gone (its credentials rotated or removed);
        ConflictError as `accept`.
        """
        current = known
        for _ in range(CAS_ATTEMPTS):
            if not current.window.is_fresh(seq):
                return False, current
            seen = current.window.seen(seq)
            if await self._write(kid, seen, current.version):
                return True, WindowState(seen, current.version + 1)
            current = await self.state(kid)
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
