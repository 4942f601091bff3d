"""The DTLS-PSK listener against an independent peer: libcoap's coap-client-openssl."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiocoap
import aiocoap.resource as resource
import pytest
from preservarium.identity import AuthKind, SecretBox
from preservarium.repositories import SQLCredentialRepository, SQLDeviceRepository
from preservarium.settings import HostPort
from preservarium_gateway.dtls import DtlsPskListener, authenticated_device
from preservarium_gateway.dtls_records import client_key_exchange_identity
from preservarium_gateway.errors import GatewayStartError
from preservarium_gateway.psk_keyring import PskKeyring
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.sdk.test_identity import KEY_A
from tests.support.net import free_port
from tests.support.waiting import until

CLIENT = "coap-client-openssl"
KEY = "good-psk-text-16"  # tinydtls takes at most 16 bytes
RESPONSE = re.compile(r"t:ACK c:(?P<code>\d\.\d\d) .*:: '(?P<payload>[^']*)'")


@dataclass
class FakePsks:
    """An in-memory PskSource; `lookups` records single-identity fetches."""

    keys: dict[str, bytes] = field(default_factory=dict)
    lookups: list[str] = field(default_factory=list)

    async def all_psks(self) -> dict[str, bytes]:
        return dict(self.keys)

    async def psk_for_identity(self, identity: str) -> bytes | None:
        self.lookups.append(identity)
        return self.keys.get(identity)


class Echo(resource.Resource):  # type: ignore[misc]
    """POST /d/{id}: 2.01 with the identity the DTLS session authenticated."""

    def __init__(self, seen: list[str | None]) -> None:
        super().__init__()
        self.seen = seen

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        device = authenticated_device(request)
        self.seen.append(device)
        return aiocoap.Message(code=aiocoap.CREATED, payload=(device or "").encode())


@dataclass
class Running:
    listener: DtlsPskListener
    seen: list[str | None]


def listener_for(source: FakePsks | SQLCredentialRepository, bind: HostPort, **kw: Any) -> Running:
    seen: list[str | None] = []
    site = resource.Site()
    for device in ("dev-1", "dev-2"):
        site.add_resource(["d", device], Echo(seen))
    keyring = PskKeyring(source=source, refresh_s=3600)
    return Running(DtlsPskListener(site=site, bind=bind, keyring=keyring, **kw), seen)


@pytest.fixture
async def dtls() -> AsyncIterator[Running]:
    running = listener_for(FakePsks({"dev-1": KEY.encode()}), HostPort("127.0.0.1", 0))
    async with running.listener:
        yield running


async def post(port: int, identity: str, key: str, *, wait_s: int = 10) -> tuple[str, str] | None:
    """coap-client POSTs over DTLS-PSK from a new source port; (code, payload) or None."""
    process = await asyncio.create_subprocess_exec(
        CLIENT, "-m", "post", "-u", identity, "-k", key, "-B", str(wait_s), "-v", "6",
        f"coaps://127.0.0.1:{port}/d/{identity}", "-e", "data",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate()
    found = RESPONSE.search(output.decode(errors="replace"))
    return (found["code"], found["payload"]) if found else None


class TestHandshake:
    async def test_good_key_gets_201_and_the_handler_sees_the_identity(self, dtls: Running) -> None:
        assert await post(dtls.listener.port, "dev-1", KEY) == ("2.01", "dev-1")
        assert dtls.seen == ["dev-1"]

    async def test_wrong_key_is_refused(self, dtls: Running) -> None:
        assert await post(dtls.listener.port, "dev-1", KEY + "x", wait_s=3) is None
        assert dtls.seen == []  # no request reached a handler

    async def test_unknown_identity_is_refused(self, dtls: Running) -> None:
        assert await post(dtls.listener.port, "dev-2", KEY, wait_s=3) is None
        assert dtls.seen == []

    async def test_a_new_handshake_from_a_new_source_port_works(self, dtls: Running) -> None:
        # Each coap-client run is a new socket: the sessions before it do not matter, as
        # for a device whose NAT binding changed (tinydtls has no connection ids).
        port = dtls.listener.port
        assert await post(port, "dev-1", KEY) == ("2.01", "dev-1")
        assert await post(port, "dev-1", KEY + "x", wait_s=3) is None
        assert await post(port, "dev-1", KEY) == ("2.01", "dev-1")
        assert dtls.seen == ["dev-1", "dev-1"]


class TestBind:
    async def test_listens_on_exactly_the_port_asked(self) -> None:
        port = free_port(socket.SOCK_DGRAM)
        running = listener_for(FakePsks({"dev-1": KEY.encode()}), HostPort("127.0.0.1", port))
        async with running.listener:
            assert running.listener.port == port
            with pytest.raises(OSError), udp_socket() as taken:
                taken.bind(("127.0.0.1", port))
            assert await post(port, "dev-1", KEY) == ("2.01", "dev-1")

    async def test_the_any_address_is_allowed(self) -> None:
        port = free_port(socket.SOCK_DGRAM)
        running = listener_for(FakePsks({"dev-1": KEY.encode()}), HostPort("0.0.0.0", port))
        async with running.listener:
            assert await post(port, "dev-1", KEY) == ("2.01", "dev-1")

    async def test_a_taken_port_fails_to_start_even_with_reuse_port(self) -> None:
        with udp_socket() as holder:
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            holder.bind(("127.0.0.1", 0))
            port = holder.getsockname()[1]
            running = listener_for(FakePsks(), HostPort("127.0.0.1", port))
            with pytest.raises(GatewayStartError, match=str(port)):
                await running.listener.start()
            await running.listener.stop()


class TestKeyring:
    async def test_each_handshake_meets_the_current_key(self) -> None:
        # The keyring reloads only hourly here: what changes is fetched per handshake.
        source = FakePsks()
        running = listener_for(source, HostPort("127.0.0.1", 0))
        async with running.listener:
            port = running.listener.port
            source.keys["dev-1"] = KEY.encode()  # registered after the start
            assert await post(port, "dev-1", KEY) == ("2.01", "dev-1")
            source.keys["dev-1"] = b"rotated-key-0016"
            assert await post(port, "dev-1", KEY, wait_s=3) is None
            assert await post(port, "dev-1", "rotated-key-0016") == ("2.01", "dev-1")
            del source.keys["dev-1"]  # removed
            assert await post(port, "dev-1", "rotated-key-0016", wait_s=3) is None
        assert running.seen == ["dev-1", "dev-1"]

    async def test_a_missed_identity_is_fetched_for_next_time(self) -> None:
        source = FakePsks()
        keyring = PskKeyring(source=source, refresh_s=3600)
        async with keyring:
            source.keys["dev-1"] = KEY.encode()
            with pytest.raises(KeyError):
                keyring.find_dtls_psk(b"dev-1")
            await until(lambda: source.lookups == ["dev-1"])
            assert keyring.find_dtls_psk(b"dev-1")[0] == KEY.encode()

    async def test_unknown_identities_are_not_looked_up_again_and_again(self) -> None:
        source = FakePsks()
        keyring = PskKeyring(source=source, refresh_s=3600)
        async with keyring:
            for _ in range(50):
                with pytest.raises(KeyError):
                    keyring.find_dtls_psk(b"ghost")
            await until(lambda: source.lookups == ["ghost"])
            with pytest.raises(KeyError):
                keyring.find_dtls_psk(b"ghost")
            await asyncio.sleep(0.05)
            assert source.lookups == ["ghost"]

    async def test_a_key_longer_than_tinydtls_takes_is_never_handed_to_it(self) -> None:
        # DTLSSocket copies the key into a 16-byte buffer without a bound: a longer key
        # must be refused before it gets there (the handshake fails, the process lives).
        keys = {"dev-1": b"k" * 24, "dev-2": KEY.encode()}
        running = listener_for(FakePsks(keys), HostPort("127.0.0.1", 0))
        async with running.listener:
            assert await post(running.listener.port, "dev-1", "k" * 24, wait_s=3) is None
            assert await post(running.listener.port, "dev-2", KEY) == ("2.01", "dev-2")

    async def test_a_reload_applies_rotations_and_removals(self) -> None:
        source = FakePsks({"dev-1": b"old", "dev-2": b"two"})
        keyring = PskKeyring(source=source, refresh_s=0.05)
        async with keyring:
            assert keyring.find_dtls_psk(b"dev-1")[0] == b"old"
            source.keys = {"dev-1": b"new"}
            await until(lambda: keyring.find_dtls_psk(b"dev-1")[0] == b"new")
            with pytest.raises(KeyError):
                keyring.find_dtls_psk(b"dev-2")

    async def test_lookups_are_rate_limited(self) -> None:
        keyring = PskKeyring(source=FakePsks(), refresh_s=3600)
        allowed = [keyring.should_fetch(f"dev-{n}".encode()) for n in range(500)]
        # One second's budget (100) at once, give or take the refill while this runs.
        assert 100 <= sum(allowed) < 150

    async def test_keys_from_the_credential_repository(self, engine: AsyncEngine) -> None:
        await SQLDeviceRepository(engine).register("dev-1", "generic")
        credentials = SQLCredentialRepository(engine, secrets=SecretBox([KEY_A]))
        psk = (await credentials.set_credentials("dev-1", AuthKind.PSK)).to_json()["psk"]
        running = listener_for(credentials, HostPort("127.0.0.1", 0))
        async with running.listener:
            assert await post(running.listener.port, "dev-1", psk) == ("2.01", "dev-1")


async def test_sessions_are_bounded() -> None:
    running = listener_for(
        FakePsks({"dev-1": KEY.encode()}), HostPort("127.0.0.1", 0), max_sessions=4
    )
    async with running.listener:
        port = running.listener.port
        peers = [udp_socket() for _ in range(12)]
        try:
            for peer in peers:
                peer.sendto(b"\x16\xfe\xfd" + bytes(10), ("127.0.0.1", port))
            await until(lambda: running.listener.session_count > 0)
            await asyncio.sleep(0.2)
            assert running.listener.session_count <= 4
        finally:
            for peer in peers:
                peer.close()
        assert await post(port, "dev-1", KEY) == ("2.01", "dev-1")


def udp_socket() -> socket.socket:
    return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


class TestRecords:
    @staticmethod
    def record(kind: int, epoch: int, body: bytes) -> bytes:
        return (
            bytes([kind, 0xFE, 0xFD])
            + epoch.to_bytes(2, "big")
            + bytes(6)
            + (len(body).to_bytes(2, "big") + body)
        )

    @staticmethod
    def client_key_exchange(identity: bytes, *, fragment_offset: int = 0) -> bytes:
        message = len(identity).to_bytes(2, "big") + identity
        size = len(message).to_bytes(3, "big")
        header = bytes([16]) + size + bytes(2) + fragment_offset.to_bytes(3, "big") + size
        return header + message

    def test_the_identity_is_read_from_a_flight_of_records(self) -> None:
        flight = (
            self.record(22, 0, self.client_key_exchange(b"dev-1"))
            + self.record(20, 0, b"\x01")
            + self.record(22, 1, bytes(40))
        )
        assert client_key_exchange_identity(flight) == b"dev-1"

    @pytest.mark.parametrize(
        "datagram",
        [
            b"",
            b"\x16\xfe\xfd" + bytes(10),
            bytes([22, 0xFE, 0xFD, 0, 1]) + bytes(6) + b"\x00\x05" + bytes(5),  # epoch 1
        ],
    )
    def test_anything_else_has_no_identity(self, datagram: bytes) -> None:
        assert client_key_exchange_identity(datagram) is None

    def test_a_later_fragment_or_a_truncated_one_has_no_identity(self) -> None:
        later = self.client_key_exchange(b"dev-1", fragment_offset=7)
        assert client_key_exchange_identity(self.record(22, 0, later)) is None
        truncated = self.record(22, 0, self.client_key_exchange(b"dev-1"))[:-2]
        assert client_key_exchange_identity(truncated) is None
