"""Repositories: the only code that talks SQL."""

from preservarium.repositories.commands import CommandRecord, SQLCommandRepository
from preservarium.repositories.devices import DeviceRecord, SQLDeviceRepository
from preservarium.repositories.parsers import (
    ActiveParser,
    ParserRecord,
    ParserSummary,
    SQLParserRepository,
)

__all__ = [
    "ActiveParser",
    "CommandRecord",
    "DeviceRecord",
    "ParserRecord",
    "ParserSummary",
    "SQLCommandRepository",
    "SQLDeviceRepository",
    "SQLParserRepository",
]
