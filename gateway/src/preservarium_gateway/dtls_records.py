"""Just enough of the DTLS 1.2 record layer to read the PSK identity a client presents.

The identity travels in clear, in the ClientKeyExchange of the handshake (epoch 0),
which lets the listener fetch that device's current key before tinydtls asks for it.
"""

from __future__ import annotations

HANDSHAKE = 22
CLIENT_KEY_EXCHANGE = 16
RECORD_HEADER = 13  # type, version (2), epoch (2), sequence number (6), length (2)
HANDSHAKE_HEADER = 12  # type, length (3), message_seq (2), fragment offset (3), length (3)


def client_key_exchange_identity(datagram: bytes) -> bytes | None:
    """The PSK identity of a ClientKeyExchange in this datagram, or None."""
    offset = 0
    while offset + RECORD_HEADER <= len(datagram):
        kind = datagram[offset]
        epoch = int.from_bytes(datagram[offset + 3 : offset + 5], "big")
        length = int.from_bytes(datagram[offset + 11 : offset + 13], "big")
        body = datagram[offset + RECORD_HEADER : offset + RECORD_HEADER + length]
        if kind == HANDSHAKE and epoch == 0:
            identity = _identity_in_handshake(body)
            if identity is not None:
                return identity
        offset += RECORD_HEADER + length
    return None


def _identity_in_handshake(body: bytes) -> bytes | None:
    if len(body) < HANDSHAKE_HEADER + 2 or body[0] != CLIENT_KEY_EXCHANGE:
        return None
    if int.from_bytes(body[6:9], "big") != 0:  # a later fragment: the identity is not here
        return None
    size = int.from_bytes(body[HANDSHAKE_HEADER : HANDSHAKE_HEADER + 2], "big")
    identity = body[HANDSHAKE_HEADER + 2 : HANDSHAKE_HEADER + 2 + size]
    return identity if len(identity) == size else None
