"""Who may use the operator API: bearer tokens and their scopes.

A token is 256 random bits; only its sha256 is stored. Scopes are ordered: `admin`
may do all that `write` may, and `write` all that `read` may.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from enum import StrEnum

TOKEN_PREFIX = "pvr_"
TOKEN_BYTES = 32
TOKEN_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}", re.ASCII)


class Scope(StrEnum):
    """What a token may do: read, write (devices, parsers, commands) or admin (audit)."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """Its place in read < write < admin."""
        return _RANKS[self]

    def allows(self, required: Scope) -> bool:
        """True when a token of this scope may do what needs `required`."""
        return self.rank >= required.rank


_RANKS = {Scope.READ: 0, Scope.WRITE: 1, Scope.ADMIN: 2}


def is_token_name(name: str) -> bool:
    """True for 1 to 64 characters of A-Z a-z 0-9 . _ -."""
    return TOKEN_NAME.fullmatch(name) is not None


def new_token() -> str:
    """A fresh bearer token: a recognisable prefix and 256 random bits."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def token_digest(token: str) -> str:
    """What is stored of a token: its sha256, hex."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
