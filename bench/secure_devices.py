"""Efento devices registered with OSCORE or PSK credentials, for the secure scenarios.

Their ids are the serials their payloads carry (what the Efento parser's `identify()`
names), so a contact on the `/m` route is the full path: the device proves who it is,
and the payload names the same device.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from preservarium.db.engine import make_engine
from preservarium.identity import AuthKind, SecretBox
from preservarium.repositories import SQLCredentialRepository, SQLDeviceRepository

from bench.workload import serial

SECRET_KEY = "bench-only-secret-key-0123456789abcdef"


def _oscore_context(document: dict[str, Any], basedir: Path) -> str:
    material = document["oscore"]
    basedir.mkdir(parents=True)
    (basedir / "settings.json").write_text(json.dumps({
        "sender-id_hex": material["sender_id_hex"],
        "recipient-id_hex": material["recipient_id_hex"],
        "secret_hex": material["master_secret_hex"], "salt_hex": material["master_salt_hex"],
        "algorithm": material["algorithm"], "kdf-hashfun": material["hkdf"],
    }))  # fmt: skip
    return str(basedir)


async def register(
    url: str, work: Path, payloads: list[bytes], *, kind: AuthKind, first: int, count: int
) -> list[dict[str, Any]]:
    """Register devices first..first+count with `kind` credentials; their load entries."""
    engine = make_engine(url)
    devices = SQLDeviceRepository(engine)
    credentials = SQLCredentialRepository(engine, secrets=SecretBox([SECRET_KEY]))
    entries = []
    try:
        for n in range(first, first + count):
            device_id = serial(n).hex()
            await devices.register(device_id, "efento")
            document = (await credentials.set_credentials(device_id, kind)).to_json()
            entry = {"id": device_id, "path": "/m", "payload_hex": payloads[n].hex()}
            if kind is AuthKind.OSCORE:
                entry["basedir"] = _oscore_context(document, work / "oscore" / device_id)
            else:
                entry |= {"identity": document["psk_identity"], "psk": document["psk"]}
            entries.append(entry)
    finally:
        await engine.dispose()
    return entries
