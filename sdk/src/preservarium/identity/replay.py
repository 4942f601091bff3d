"""An OSCORE replay window as a value: the floor of the window and a bitmap above it.

The same representation as aiocoap's `ReplayWindow` (`index`, `bitfield`), so a
persisted window can seed aiocoap's directly. Bit i set means sequence number
`floor + i` has been seen; numbers below the floor are refused, numbers at or above
`floor + size` are fresh and slide the window up.
"""

from __future__ import annotations

from dataclasses import dataclass

# aiocoap's default window size for a recipient context.
REPLAY_WINDOW_SIZE = 32


@dataclass(frozen=True, slots=True)
class ReplayWindow:
    """Which sequence numbers of one security context have been seen."""

    floor: int = 0
    bitmap: int = 0
    size: int = REPLAY_WINDOW_SIZE

    def is_fresh(self, seq: int) -> bool:
        """Whether a message with this sequence number may be accepted."""
        if seq < self.floor:
            return False
        if seq >= self.floor + self.size:
            return True
        return not (self.bitmap >> (seq - self.floor)) & 1

    def seen(self, seq: int) -> ReplayWindow:
        """The window after accepting `seq`; ValueError if `seq` is not fresh."""
        if not self.is_fresh(seq):
            raise ValueError(f"sequence number {seq} is a replay")
        floor, bitmap = self.floor, self.bitmap
        overshoot = seq - (floor + self.size - 1)
        if overshoot > 0:
            floor, bitmap = floor + overshoot, bitmap >> overshoot
        return ReplayWindow(floor, bitmap | 1 << (seq - floor), self.size)
