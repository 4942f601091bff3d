"""Contacts for tests that call the sandbox directly."""

from __future__ import annotations

from datetime import UTC, datetime


def unix(seconds: int) -> datetime:
    """A contact's `received_at` from the Unix seconds the parser will see."""
    return datetime.fromtimestamp(seconds, UTC)
