"""The vocabulary of device identity: how a device authenticates, and its OSCORE material."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# aiocoap's default AEAD and key-derivation hash (names as aiocoap.oscore spells them).
OSCORE_ALGORITHM = "AES-CCM-16-64-128"
OSCORE_HKDF = "sha256"
# tinydtls (aiocoap's DTLS server) takes keys of at most 16 bytes and identities of at
# most 32: a longer key would overrun its 16-byte buffer, a longer identity is refused.
DTLS_PSK_MAX_BYTES = 16
DTLS_PSK_IDENTITY_MAX_BYTES = 32


class AuthKind(StrEnum):
    """How a device proves who it is."""

    NONE = "none"
    TOKEN = "token"  # a bearer token, in the Uri-Query or the payload
    PSK = "psk"  # DTLS 1.2 with a pre-shared key; the PSK identity is the device id
    OSCORE = "oscore"  # RFC 8613 on the plain CoAP port

    @property
    def has_secret_at_rest(self) -> bool:
        """Whether the kind stores an encrypted secret (and so needs the secret key)."""
        return self in (AuthKind.PSK, AuthKind.OSCORE)


@dataclass(frozen=True, slots=True)
class OscoreMaterial:
    """One OSCORE security context, from the device's point of view.

    `sender_id` is what the device puts in its requests' kid, so it is the gateway's
    recipient id and names the device (unique across devices). A device's aiocoap
    client context takes these fields as they are; the gateway swaps the two ids.
    """

    sender_id: bytes
    recipient_id: bytes
    master_secret: bytes
    master_salt: bytes
    algorithm: str = OSCORE_ALGORITHM
    hkdf: str = OSCORE_HKDF
