"""Secrets at rest: AES-GCM under keys derived from PRESERVARIUM_SECRET_KEY, with key ids.

A sealed secret reads `v1:<key id>:<base64url(nonce || ciphertext || tag)>`. The setting
lists the current key first and older keys after it; sealing uses the first, opening
picks the key by the id in the secret, so a key can be replaced without downtime and
the stored secrets re-sealed afterwards (`SQLCredentialRepository.reseal_all`).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from preservarium.errors import SecretKeyError
from preservarium.settings import parse_secret_keys

FORMAT = "v1"
NONCE_BYTES = 12
ENCRYPTION_INFO = b"preservarium secrets at rest v1: AES-256-GCM key"
KEY_ID_INFO = b"preservarium secrets at rest v1: key id"


def _derive(key: str, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(key.encode())


@dataclass(frozen=True, slots=True)
class _Key:
    key_id: str
    aead: AESGCM

    @classmethod
    def derive(cls, key: str) -> _Key:
        # The id comes from the key by a one-way function: it names the key, reveals nothing.
        key_id = _derive(key, KEY_ID_INFO, 4).hex()
        return cls(key_id, AESGCM(_derive(key, ENCRYPTION_INFO, 32)))


class SecretBox:
    """Seals and opens secrets at rest; the first key seals, every key opens."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._keys = [_Key.derive(key) for key in keys]
        self._by_id = {key.key_id: key for key in self._keys}
        if len(self._by_id) != len(self._keys):
            raise SecretKeyError("the same secret key is listed twice", kind="duplicate_key")

    @classmethod
    def from_setting(cls, value: str | None) -> SecretBox:
        """The box for PRESERVARIUM_SECRET_KEY's value (None or empty: a box with no key)."""
        return cls(parse_secret_keys(value) if value else ())

    @property
    def has_key(self) -> bool:
        """Whether secrets can be sealed at all."""
        return bool(self._keys)

    @property
    def current_key_id(self) -> str | None:
        """The id of the key that seals (None when no key is configured)."""
        return self._keys[0].key_id if self._keys else None

    def require_key(self) -> str:
        """The sealing key's id; SecretKeyError (`no_key`) when no key is configured."""
        if not self._keys:
            raise SecretKeyError(
                "PRESERVARIUM_SECRET_KEY is not set: psk and oscore secrets cannot be stored",
                kind="no_key",
            )
        return self._keys[0].key_id

    def seal(self, secret: bytes, *, context: str) -> str:
        """Encrypt `secret`, bound to `context` (e.g. the device and field it belongs to)."""
        self.require_key()
        key = self._keys[0]
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = nonce + key.aead.encrypt(nonce, secret, context.encode())
        return f"{FORMAT}:{key.key_id}:{base64.urlsafe_b64encode(sealed).decode()}"

    def open(self, sealed: str, *, context: str) -> bytes:
        """Decrypt a sealed secret; SecretKeyError if its key is gone or it was altered."""
        key_id = self.key_id_of(sealed)
        key = self._by_id.get(key_id)
        if key is None:
            kind = "unknown_key" if self._keys else "no_key"
            raise SecretKeyError(f"no configured secret key has id {key_id}", kind=kind)
        try:
            raw = base64.urlsafe_b64decode(sealed.split(":", 2)[2])
            return key.aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise SecretKeyError("a stored secret does not authenticate", kind="damaged") from exc

    @staticmethod
    def key_id_of(sealed: str) -> str:
        """The id of the key a sealed secret was sealed under."""
        version, _, rest = sealed.partition(":")
        key_id, sep, _ = rest.partition(":")
        if version != FORMAT or not sep:
            raise SecretKeyError("a stored secret is not in a known format", kind="damaged")
        return key_id
