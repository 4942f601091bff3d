"""A device's side of an OSCORE context, as aiocoap's client implements it.

libcoap's coap-client in Debian 12 (4.3.1) has no OSCORE, so the independent peer is
aiocoap's own `FilesystemSecurityContext`, the context its client uses, fed the
credentials document the CLI prints. It protects requests into datagrams (so a test can
send one twice, to two gateways, or after a restart) and unprotects the answers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiocoap
from aiocoap import oscore
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import CON, NON


def write_context(
    document: dict[str, Any], basedir: Path, *, secret_hex: str | None = None
) -> Path:
    """Write the device's context as aiocoap's client reads it (settings.json)."""
    material = document["oscore"]
    basedir.mkdir(parents=True, exist_ok=True)
    settings = {
        "sender-id_hex": material["sender_id_hex"],
        "recipient-id_hex": material["recipient_id_hex"],
        "secret_hex": secret_hex or material["master_secret_hex"],
        "salt_hex": material["master_salt_hex"],
        "algorithm": material["algorithm"],
        "kdf-hashfun": material["hkdf"],
    }
    (basedir / "settings.json").write_text(json.dumps(settings))
    return basedir


class OscorePeer:
    """Protects requests and unprotects responses with one device context."""

    def __init__(self, basedir: Path) -> None:
        self.context = oscore.FilesystemSecurityContext(str(basedir))

    def request(
        self,
        path: str,
        payload: bytes,
        *,
        mid: int,
        token: bytes,
        code: Code = Code.POST,
        confirmable: bool = True,
        query: tuple[str, ...] = (),
    ) -> tuple[bytes, Any]:
        """The datagram of a protected request, and what its response is checked with."""
        plain = aiocoap.Message(
            code=code, uri_path=tuple(p for p in path.split("/") if p), payload=payload
        )
        if query:
            plain.opt.uri_query = query
        outer, request_id = self.context.protect(plain)
        outer.mtype = CON if confirmable else NON
        outer.mid, outer.token = mid, token
        return outer.encode(), request_id

    def response(self, data: bytes, request_id: Any) -> aiocoap.Message:
        """The plain response inside a protected one (ProtectionInvalid if it is not)."""
        message = aiocoap.Message.decode(data)
        plain, _ = self.context.unprotect(message, request_id)
        result: aiocoap.Message = plain
        return result

    def close(self) -> None:
        """Release the context's lock file."""
        self.context._destroy()
