"""Which devices have a command waiting, known in memory so that a contact of a device
with none costs no query."""

from __future__ import annotations


class PendingCommandIndex:
    """Device ids with at least one queued command.

    A refresh reads the database's view, which may predate a command queued while the
    query ran: what was added meanwhile is kept, or that device's next contact would
    miss its command until the next refresh.
    """

    def __init__(self) -> None:
        self._devices: set[str] = set()
        self._added_since_read: set[str] = set()

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._devices

    def __len__(self) -> int:
        return len(self._devices)

    def add(self, device_id: str) -> None:
        """A command was queued for `device_id`."""
        self._devices.add(device_id)
        self._added_since_read.add(device_id)

    def discard(self, device_id: str) -> None:
        """`device_id` has nothing queued any more."""
        self._devices.discard(device_id)

    def reading(self) -> None:
        """A read of the database's view starts now."""
        self._added_since_read = set()

    def replace(self, device_ids: set[str]) -> None:
        """Take the database's view, read since the last `reading()`, with what was
        added after it began."""
        self._devices = device_ids | self._added_since_read
        self._added_since_read = set()
