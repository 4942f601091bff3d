"""The Kafka topics of the contract: their suffixes, and their full names under a prefix."""

from __future__ import annotations

from dataclasses import dataclass

# Suffixes after PRESERVARIUM_TOPIC_PREFIX.
RAW = "uplink.raw"
PARSED = "uplink.parsed"
FAILED = "uplink.failed"
COMMAND_REQUEST = "command.request"
COMMAND_STATUS = "command.status"
# The gateway creates missing topics with this many partitions; a topic a tool creates
# first must look the same.
PARTITIONS = 3


@dataclass(frozen=True, slots=True)
class Topics:
    """Full topic names for one prefix."""

    raw: str
    parsed: str
    failed: str
    command_request: str
    command_status: str

    @classmethod
    def with_prefix(cls, prefix: str) -> Topics:
        """The contract's topic suffixes under `prefix`."""
        return cls(
            raw=prefix + RAW,
            parsed=prefix + PARSED,
            failed=prefix + FAILED,
            command_request=prefix + COMMAND_REQUEST,
            command_status=prefix + COMMAND_STATUS,
        )

    def all(self) -> tuple[str, ...]:
        """Every topic, for creating them."""
        return (self.raw, self.parsed, self.failed, self.command_request, self.command_status)
