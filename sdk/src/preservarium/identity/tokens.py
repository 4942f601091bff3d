"""Bearer tokens at rest: only a hash is stored; comparison takes constant time."""

from __future__ import annotations

import hashlib
import hmac


def token_hash(token: str) -> str:
    """The stored form of a token: SHA-256 in hex.

    A token carries 256 random bits, so a plain hash is enough: there is nothing to
    brute-force and no need for a salt or a slow hash.
    """
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    """Whether `token` hashes to `stored_hash`, in time independent of where they differ."""
    return hmac.compare_digest(token_hash(token), stored_hash)
