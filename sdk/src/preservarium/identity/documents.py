"""The one-time secret documents: what `register` and `credentials --rotate` print once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from preservarium.identity.kinds import AuthKind, OscoreMaterial


@dataclass(frozen=True, slots=True)
class TokenDocument:
    """A device's bearer token, shown once."""

    device_id: str
    token: str

    def to_json(self) -> dict[str, Any]:
        """The contract's JSON shape."""
        return {"device_id": self.device_id, "auth": AuthKind.TOKEN.value, "token": self.token}


@dataclass(frozen=True, slots=True)
class PskDocument:
    """A device's DTLS pre-shared key, shown once; the identity is the device id."""

    device_id: str
    psk: str

    def to_json(self) -> dict[str, Any]:
        """The contract's JSON shape."""
        return {
            "device_id": self.device_id,
            "auth": AuthKind.PSK.value,
            "psk_identity": self.device_id,
            "psk": self.psk,
            "psk_hex": self.psk.encode().hex(),
        }


@dataclass(frozen=True, slots=True)
class OscoreDocument:
    """A device's OSCORE context, shown once, from the device's point of view."""

    device_id: str
    material: OscoreMaterial

    def to_json(self) -> dict[str, Any]:
        """The contract's JSON shape."""
        material = self.material
        return {
            "device_id": self.device_id,
            "auth": AuthKind.OSCORE.value,
            "oscore": {
                "sender_id_hex": material.sender_id.hex(),
                "recipient_id_hex": material.recipient_id.hex(),
                "master_secret_hex": material.master_secret.hex(),
                "master_salt_hex": material.master_salt.hex(),
                "algorithm": material.algorithm,
                "hkdf": material.hkdf,
            },
        }


@dataclass(frozen=True, slots=True)
class NoCredentialDocument:
    """A device that authenticates with nothing: there is no secret to show."""

    device_id: str

    def to_json(self) -> dict[str, Any]:
        """The contract's JSON shape."""
        return {"device_id": self.device_id, "auth": AuthKind.NONE.value}


CredentialDocument = TokenDocument | PskDocument | OscoreDocument | NoCredentialDocument
