"""Repositories: the only code that talks SQL."""

from preservarium.repositories.activity import DeviceActivity, SQLDeviceActivityRepository
from preservarium.repositories.api_tokens import SQLTokenRepository, TokenRecord
from preservarium.repositories.audit import AuditRecord, SQLAuditRepository
from preservarium.repositories.commands import CommandRecord, SQLCommandRepository
from preservarium.repositories.credentials import (
    CredentialSummary,
    OscoreContextRecord,
    SQLCredentialRepository,
)
from preservarium.repositories.devices import DeviceRecord, SQLDeviceRepository
from preservarium.repositories.parsers import (
    ActiveParser,
    ParserRecord,
    ParserSummary,
    SQLParserRepository,
)
from preservarium.repositories.replay_windows import SQLReplayWindowRepository
from preservarium.repositories.replays import ReplayRecord, Span, SQLReplayRepository

__all__ = [
    "ActiveParser",
    "AuditRecord",
    "CommandRecord",
    "CredentialSummary",
    "DeviceActivity",
    "DeviceRecord",
    "OscoreContextRecord",
    "ParserRecord",
    "ParserSummary",
    "ReplayRecord",
    "SQLAuditRepository",
    "SQLCommandRepository",
    "SQLCredentialRepository",
    "SQLDeviceActivityRepository",
    "SQLDeviceRepository",
    "SQLParserRepository",
    "SQLReplayRepository",
    "SQLReplayWindowRepository",
    "SQLTokenRepository",
    "Span",
    "TokenRecord",
]
