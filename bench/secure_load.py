"""The load generator over OSCORE or DTLS-PSK: each lane is one authenticated device.

`python -m bench.secure_load < SPEC_JSON`. The spec names the mode and one entry per
device (its payload and path, and its OSCORE context directory or its PSK). A lane
sends its device's contacts one after the other, so `window` = the number of devices.

- OSCORE: every request is protected anew (a new sequence number) with aiocoap's own
  client context, and every answer unprotected to read its real code; the crypto runs
  here, in the load generator's process, not in what is measured.
- DTLS: each device holds one session (tinydtls, as DTLSSocket builds it), set up
  before the clock starts: what is measured is contacts over established sessions, as a
  device that stays awake sees them. A handshake costs one extra round trip and the PSK
  exchange on top (the gateway's tests cover it).
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import sys
import time
from typing import Any

import aiocoap
from aiocoap import oscore
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import CON
from preservarium_tools import coapwire as cw

from bench.loadgen import LoadGenerator

HANDSHAKE_TIMEOUT_S = 10.0
DTLS_EVENT_CONNECTED = 0x01DE


class OscoreDevice:
    """Protects each request anew; unprotects each answer."""

    def __init__(self, entry: dict[str, Any]) -> None:
        self.path = tuple(p for p in entry["path"].split("/") if p)
        self.payload = bytes.fromhex(entry["payload_hex"])
        self.context = oscore.FilesystemSecurityContext(entry["basedir"])

    def datagram(self, mid: int, token: bytes) -> tuple[bytes, Any]:
        message = aiocoap.Message(code=Code.POST, uri_path=self.path, payload=self.payload)
        outer, request_id = self.context.protect(message)
        outer.mtype, outer.mid, outer.token = CON, mid, token
        return outer.encode(), request_id

    def code(self, data: bytes, request_id: Any) -> str:
        message = aiocoap.Message.decode(data)
        if message.opt.oscore is None:  # refused in clear
            return str(message.code.dotted)
        plain, _ = self.context.unprotect(message, request_id)
        return str(plain.code.dotted)


class DtlsDevice(asyncio.DatagramProtocol):
    """One DTLS-PSK session to the target; CoAP goes in and out in clear here."""

    def __init__(self, entry: dict[str, Any], generator: SecureLoadGenerator) -> None:
        from DTLSSocket import dtls

        self.path, self.payload = entry["path"], bytes.fromhex(entry["payload_hex"])
        self.generator = generator
        self.transport: asyncio.DatagramTransport | None = None
        self.connected = asyncio.get_running_loop().create_future()
        identity, key = entry["identity"].encode(), entry["psk"].encode()
        self.dtls = dtls.DTLS(read=self._read, write=self._write, event=self._event,
                              pskId=identity, pskStore={identity: key})  # fmt: skip
        self.session: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.session = self.dtls.connect("::1", 1234)  # a sentinel (one peer), as aiocoap

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.dtls.handleMessage(self.session, data)

    def send(self, plaintext: bytes) -> None:
        self.dtls.write(self.session, plaintext)

    def _read(self, sender: Any, data: bytes) -> int:
        if len(data) >= 4 and data[0] >> 4 & 3 == CON:  # a separate response: ACK it
            self.send(bytes([0x60, 0]) + data[2:4])
        self.generator.answer(data)
        return len(data)

    def _write(self, recipient: Any, data: bytes) -> int:
        if self.transport is not None:
            self.transport.sendto(data)
        return len(data)

    def _event(self, level: int, code: int) -> None:
        if code == DTLS_EVENT_CONNECTED and not self.connected.done():
            self.connected.set_result(None)


class SecureLoadGenerator(LoadGenerator):
    """LoadGenerator's stats and report, with one authenticated device per lane."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__({**spec, "templates": [], "window": len(spec["devices"])})
        self.mode = spec["mode"]
        self.entries = spec["devices"]
        self.secure: dict[bytes, tuple[Any, Any]] = {}  # token -> (device, request id)

    def oscore_answer(self, data: bytes) -> None:
        if len(data) < 8 or data[0] & 0x0F != 4:
            return
        token = data[4:8]
        found = self.secure.pop(token, None)
        entry = self.pending.pop(token, None)
        if found is None or entry is None:
            return
        device, request_id = found
        label, started, done = entry
        self.stats.record(label, device.code(data, request_id), time.perf_counter() - started)
        if not done.done():
            done.set_result(None)

    async def run(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        devices, transports = await self._open(loop)
        started = time.perf_counter()
        deadline = started + self.duration_s
        counter = 0

        async def lane(device: Any) -> None:
            nonlocal counter
            # Random, as the plain generator's: an earlier run's socket may have had this
            # port, and the gateway's deduplication must not take a new request for it.
            mid = int.from_bytes(os.urandom(2), "big")
            while time.perf_counter() < deadline:
                counter += 1
                mid = (mid + 1) & 0xFFFF
                await self._contact(device, mid, struct.pack(">I", counter & 0xFFFFFFFF))

        await asyncio.gather(*(lane(device) for device in devices))
        elapsed = time.perf_counter() - started
        for transport in transports:
            transport.close()
        return self.report(elapsed)

    async def _open(self, loop: asyncio.AbstractEventLoop) -> tuple[list[Any], list[Any]]:
        devices: list[Any] = []
        transports: list[Any] = []
        for entry in self.entries:
            if self.mode == "oscore":
                device: Any = OscoreDevice(entry)
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Answers(self.oscore_answer), remote_addr=(self.host, self.port)
                )
                device.transport = transport
            else:
                transport, device = await loop.create_datagram_endpoint(
                    lambda entry=entry: DtlsDevice(entry, self),  # type: ignore[misc]
                    remote_addr=(self.host, self.port),
                )
                await asyncio.wait_for(device.connected, HANDSHAKE_TIMEOUT_S)
            devices.append(device)
            transports.append(transport)
        return devices, transports

    async def _contact(self, device: Any, mid: int, token: bytes) -> None:
        label = self.mode
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending[token] = (label, time.perf_counter(), done)
        if self.mode == "oscore":
            datagram, request_id = device.datagram(mid, token)
            self.secure[token] = (device, request_id)
            device.transport.sendto(datagram)
        else:
            message = cw.request(cw.POST, device.path, mid=mid, token=token,
                                 payload=device.payload)  # fmt: skip
            device.send(cw.encode(message))
        try:
            await asyncio.wait_for(done, self.timeout_s)
        except TimeoutError:
            self.pending.pop(token, None)
            self.secure.pop(token, None)
            self.stats.timeouts[label] = self.stats.timeouts.get(label, 0) + 1


class _Answers(asyncio.DatagramProtocol):
    def __init__(self, answer: Any) -> None:
        self._answer = answer
        self._transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) >= 4 and data[0] >> 4 & 3 == CON:  # a separate response: ACK it
            self._transport.sendto(bytes([0x60, 0]) + data[2:4])
        self._answer(data)


def main() -> None:
    """`python -m bench.secure_load < SPEC_JSON`: run, print the report as JSON."""
    spec = json.loads(sys.stdin.read())
    print(json.dumps(asyncio.run(SecureLoadGenerator(spec).run())))


if __name__ == "__main__":
    main()
