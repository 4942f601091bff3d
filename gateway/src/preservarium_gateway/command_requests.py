"""`command.request` records as the gateway reads them: the SDK's validation, which
`preservarium command send` applies too, so both refuse the same records."""

from __future__ import annotations

from preservarium.command_requests import CommandRequest, Rejection, read_command_request

__all__ = ["CommandRequest", "Rejection", "read_command_request"]
