"""The gateway's error tree; foreign exceptions are translated where they enter."""

from __future__ import annotations

from preservarium.errors import PreservariumError


class GatewayError(PreservariumError):
    """Base of the gateway's own errors."""


class PublishError(GatewayError):
    """A record was not acknowledged by Kafka in time; the device must retry."""

    retriable = True


class GatewayStartError(GatewayError):
    """The gateway could not start (port taken, database unreachable)."""
