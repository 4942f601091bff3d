"""The gateway's error tree; foreign exceptions are translated where they enter."""

from __future__ import annotations

from preservarium.errors import PreservariumError, RepositoryError


class GatewayError(PreservariumError):
    """Base of the gateway's own errors."""


class PublishError(GatewayError):
    """A record was not acknowledged by Kafka in time; the device must retry."""

    retriable = True


class GatewayStartError(GatewayError):
    """The gateway could not start (port taken, database unreachable)."""


class DirectoryBusyError(GatewayError, RepositoryError):
    """An unknown device id was not looked up: the budget of such lookups is spent
    (a flood of made-up ids). Not an answer: the device should retry (5.03). A
    RepositoryError too, so every caller that cannot ask the registry treats it alike."""

    retriable = True
