"""The SDK's error tree: every failure the SDK raises is one of these, with data."""

from __future__ import annotations


class PreservariumError(Exception):
    """Base of every error the SDK raises on purpose."""


class ConfigError(PreservariumError):
    """A setting has a bad value; the message names the variable."""


class RepositoryError(PreservariumError):
    """A repository operation failed."""


class NotFoundError(RepositoryError):
    """The named parser, version, device or command does not exist."""


class ConflictError(RepositoryError):
    """The row exists already (a device id, a command request id)."""


class DatabaseUnavailableError(RepositoryError):
    """The database could not be reached; retriable."""

    retriable = True


class SecretKeyError(PreservariumError):
    """A secret at rest cannot be sealed or opened.

    `kind` says why: `no_key` (PRESERVARIUM_SECRET_KEY is not set), `unknown_key` (the
    secret was sealed under a key that is no longer configured), `damaged` (the stored
    ciphertext does not authenticate).
    """

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class CredentialError(PreservariumError):
    """Credentials of this kind cannot be given to this device; `kind` says why."""

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class InvalidParserSourceError(PreservariumError):
    """A parser source is refused before it is stored (size, encoding, syntax)."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line
