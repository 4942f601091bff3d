"""Fresh credentials from the operating system's CSPRNG; pure functions, no storage."""

from __future__ import annotations

import secrets

from preservarium.identity.kinds import DTLS_PSK_MAX_BYTES, OscoreMaterial

TOKEN_BYTES = 32  # 256 bits; stored as a SHA-256 hash, so no salt or slow hash is needed
# Text, because device SDKs and libcoap's `coap-client -k` take the key as a string;
# URL-safe, so it survives shells and config files. As long as tinydtls allows (16
# bytes), which makes 96 bits: see docs/identity.md on why not 128.
PSK_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
PSK_LENGTH = DTLS_PSK_MAX_BYTES
OSCORE_SECRET_BYTES = 16
OSCORE_SALT_BYTES = 8
# An OSCORE id is at most nonce length - 6 = 7 bytes with AES-CCM-16-64-128; 6 random
# bytes make collisions rare, and the unique index turns the rare one into a retry.
OSCORE_ID_BYTES = 6


def new_token() -> str:
    """A bearer token: 256 random bits, URL-safe text (fits a Uri-Query `t=`)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def new_psk() -> str:
    """A DTLS pre-shared key as printable text: 16 characters, 96 bits of entropy."""
    return "".join(secrets.choice(PSK_ALPHABET) for _ in range(PSK_LENGTH))


def new_oscore_material() -> OscoreMaterial:
    """A fresh OSCORE context with distinct random sender and recipient ids."""
    sender_id = secrets.token_bytes(OSCORE_ID_BYTES)
    recipient_id = secrets.token_bytes(OSCORE_ID_BYTES)
    while recipient_id == sender_id:
        recipient_id = secrets.token_bytes(OSCORE_ID_BYTES)
    return OscoreMaterial(
        sender_id=sender_id,
        recipient_id=recipient_id,
        master_secret=secrets.token_bytes(OSCORE_SECRET_BYTES),
        master_salt=secrets.token_bytes(OSCORE_SALT_BYTES),
    )
