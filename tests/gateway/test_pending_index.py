"""The in-memory index of devices with queued commands, against its refreshes."""

from __future__ import annotations

from preservarium_gateway.pending_commands import PendingCommandIndex


def test_a_command_queued_while_the_refresh_reads_is_not_lost() -> None:
    index = PendingCommandIndex()
    index.reading()  # the refresh's query starts...
    index.add("queued-meanwhile")  # ...the consumer stores a command...
    index.replace({"older"})  # ...and the query's view, read before, lacks it
    assert "queued-meanwhile" in index
    assert "older" in index


def test_a_refresh_takes_the_databases_view_of_what_was_there_before() -> None:
    index = PendingCommandIndex()
    index.add("sent-elsewhere")
    index.reading()
    index.replace(set())  # another gateway sent its command: nothing queued any more
    assert "sent-elsewhere" not in index
    assert len(index) == 0
