"""OSCORE (RFC 8613) end to end: aiocoap's own client context as the device (libcoap's
coap-client in Debian 12 has no OSCORE), real UDP, broker, sandbox and database.

Refused contacts are checked for their code, for the absence of any uplink record (a
later good contact of the same device is the marker: records are published in order),
and for not taking the device's command. Replays are sent as the very same datagram
(with a new message id, so that CoAP deduplication does not answer them), to the same
gateway, to a second gateway on the same database, and after a restart.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import struct
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiocoap
import pytest
from aiocoap.message import Direction
from aiocoap.numbers.codes import Code
from aiocoap.numbers.optionnumbers import OptionNumber
from aiocoap.optiontypes import OpaqueOption
from preservarium.db.engine import make_engine
from preservarium.identity import AuthKind, SecretBox
from preservarium.repositories import (
    SQLCredentialRepository,
    SQLDeviceRepository,
    SQLParserRepository,
)
from preservarium.settings import DeviceAuthMode
from preservarium_gateway.config import GatewayConfig
from preservarium_gateway.server import GatewayServer
from preservarium_sandbox.server import SandboxServer
from preservarium_tools.coapwire import CoapClient
from preservarium_tools.embedded.broker import EmbeddedBroker

from tests.gateway.conftest import Topology, gateway_config
from tests.gateway.parsers import THERMO
from tests.gateway.test_commands import command, queued, send_command
from tests.sdk.test_identity import KEY_A
from tests.support.kafka import prefix
from tests.support.oscore_peer import OscorePeer, write_context

DEVICES = ("osc-1", "osc-2", "osc-3", "osc-4")
CLIENT_DEVICE = "osc-5"  # aiocoap's full client context; keeps its own sequence numbers
ROTATED = "osc-6"
CLI_DEVICE = "osc-7"  # the documented aiocoap-client example
ROUTE_DEVICE = b"osc1".hex()  # what THERMO's identify() names for a payload b"osc1..."
COMMAND_BODY = b"P" + struct.pack(">H", 900)


def reading(tag: int) -> bytes:
    return b"\x00\x00\x00\x00" + struct.pack(">h", tag)


@pytest.fixture(scope="module")
async def documents(gw_db: str, gw_sandbox: SandboxServer) -> dict[str, Any]:
    engine = make_engine(gw_db)
    await SQLParserRepository(engine).upload("thermo", THERMO)
    devices = SQLDeviceRepository(engine)
    credentials = SQLCredentialRepository(engine, secrets=SecretBox([KEY_A]))
    issued: dict[str, Any] = {}
    for device_id in (*DEVICES, CLIENT_DEVICE, ROTATED, ROUTE_DEVICE, CLI_DEVICE):
        await devices.register(device_id, "thermo")
        issued[device_id] = (
            await credentials.set_credentials(device_id, AuthKind.OSCORE)
        ).to_json()
    await devices.register("osc-token", "thermo")
    issued["osc-token"] = (await credentials.set_credentials("osc-token", AuthKind.TOKEN)).to_json()
    await engine.dispose()
    await gw_sandbox.catalog.refresh()
    return issued


def strict_config(
    gw_db: str, gw_sandbox: SandboxServer, broker: EmbeddedBroker, group: str = ""
) -> GatewayConfig:
    config = gateway_config(
        database_url=gw_db, bootstrap=broker.bootstrap, sandbox_addr=gw_sandbox.config.listen,
        topic_prefix=TOPICS, device_auth=DeviceAuthMode.REQUIRED, secret_keys=(KEY_A,),
    )  # fmt: skip
    # Another gateway in a group of its own: no rebalance of the first one's consumer.
    return dataclasses.replace(config, consumer_group=config.consumer_group + group)


TOPICS = prefix()


@pytest.fixture(scope="module")
async def strict(
    gw_db: str, gw_sandbox: SandboxServer, broker: EmbeddedBroker, documents: dict[str, Any]
) -> AsyncIterator[GatewayServer]:
    async with GatewayServer(strict_config(gw_db, gw_sandbox, broker)) as server:
        yield server


@pytest.fixture(scope="module")
async def second(
    gw_db: str, gw_sandbox: SandboxServer, broker: EmbeddedBroker, strict: GatewayServer
) -> AsyncIterator[GatewayServer]:
    """A second gateway on the same database and topics."""
    async with GatewayServer(strict_config(gw_db, gw_sandbox, broker, "-second")) as server:
        yield server
        await joined(server)


@pytest.fixture
async def seen(strict: GatewayServer, broker: EmbeddedBroker) -> AsyncIterator[Topology]:
    topology = Topology(broker.bootstrap, strict.config.topics, from_end=True)
    await topology.start()
    yield topology
    await topology.stop()


@pytest.fixture(scope="module")
def peers(
    tmp_path_factory: pytest.TempPathFactory, documents: dict[str, Any]
) -> Iterator[dict[str, OscorePeer]]:
    """One context per device for the whole module: a device never reuses a number."""
    base = tmp_path_factory.mktemp("peers")
    made = {d: OscorePeer(write_context(documents[d], base / d)) for d in DEVICES}
    yield made
    for peer in made.values():
        peer.close()


class _Catcher(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answers: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.answers.put_nowait(data)


async def exchange(
    port: int, datagram: bytes, token: bytes, timeout_s: float = 10, *, times: int = 1
) -> Any:
    """Send a datagram and return the response carrying `token` (ACKing a separate one);
    with `times`, send it that many times from the same socket and return every answer."""
    loop = asyncio.get_running_loop()
    transport, catcher = await loop.create_datagram_endpoint(
        _Catcher, remote_addr=("127.0.0.1", port)
    )
    answers = []
    try:
        for _ in range(times):
            transport.sendto(datagram)
            answers.append(await _answer(transport, catcher, token, timeout_s))
    finally:
        transport.close()
    return answers[0] if times == 1 else answers


async def _answer(transport: Any, catcher: _Catcher, token: bytes, timeout_s: float) -> bytes:
    async with asyncio.timeout(timeout_s):
        while True:
            data = await catcher.answers.get()
            answer = aiocoap.Message.decode(data)
            if answer.mtype == aiocoap.CON:
                ack = aiocoap.Message(code=Code.EMPTY)
                ack.mtype, ack.mid = aiocoap.ACK, answer.mid
                transport.sendto(ack.encode())
            if answer.code != Code.EMPTY and answer.token == token:
                return bytes(data)


def with_mid(datagram: bytes, mid: int) -> bytes:
    """The same datagram (same OSCORE sequence number) under a new CoAP message id."""
    return datagram[:2] + mid.to_bytes(2, "big") + datagram[4:]


async def send(
    peer: OscorePeer, port: int, path: str, payload: bytes, **kw: Any
) -> tuple[aiocoap.Message, bytes, Any]:
    """A protected request: (the outer response, the datagram sent, its request id)."""
    token = os.urandom(4)
    datagram, request_id = peer.request(path, payload, mid=_mid(), token=token, **kw)
    answer = aiocoap.Message.decode(await exchange(port, datagram, token))
    return answer, datagram, request_id


async def replay(port: int, datagram: bytes) -> aiocoap.Message:
    again = with_mid(datagram, _mid())
    token = aiocoap.Message.decode(again).token
    return aiocoap.Message.decode(await exchange(port, again, token))


async def joined(gateway: GatewayServer) -> None:
    """Wait until the gateway's command consumer has its partitions: stopping it while it
    joins its group leaves a broker connection open (aiokafka)."""
    async with asyncio.timeout(30):
        # aiokafka offers no event for it: poll its state.
        while not ((live := gateway.consumer._live) is not None and live.assignment()):  # noqa: ASYNC110
            await asyncio.sleep(0.05)


def _mid() -> int:
    return int.from_bytes(os.urandom(2), "big")


def inner(peer: OscorePeer, answer: aiocoap.Message, request_id: Any) -> aiocoap.Message:
    plain, _ = peer.context.unprotect(answer, request_id)
    result: aiocoap.Message = plain
    return result


def raws_of(topics: Topology, device_id: str) -> list[bytes]:
    return [
        base64.b64decode(r["payload_b64"])
        for r in topics.raw.values()
        if r["device_id"] == device_id
    ]


async def marker(peer: OscorePeer, port: int, topics: Topology, device_id: str, tag: int) -> None:
    answer, _, request_id = await send(peer, port, f"/d/{device_id}", reading(tag))
    assert inner(peer, answer, request_id).code == Code.CREATED
    await topics.raw.wait_for(lambda r: r["device_id"] == device_id
                              and base64.b64decode(r["payload_b64"]) == reading(tag))  # fmt: skip


def refused(gateway: GatewayServer, cause: str) -> float:
    value = gateway.metrics.registry.get_sample_value(
        "preservarium_gateway_oscore_refused_total", {"cause": cause}
    )
    return value or 0.0


class TestContacts:
    async def test_aiocoaps_client_reaches_uplink_raw_as_the_device(
        self, strict: GatewayServer, seen: Topology, documents: dict[str, Any], tmp_path: Path
    ) -> None:
        port = strict.config.bind.port
        basedir = write_context(documents[CLIENT_DEVICE], tmp_path / "client")
        context = await aiocoap.Context.create_client_context(transports=["oscore", "udp6"])
        try:
            context.client_credentials.load_from_dict(
                {f"coap://127.0.0.1:{port}/*": {"oscore": {"basedir": f"{basedir}/"}}}
            )
            request = aiocoap.Message(
                code=Code.POST,
                uri=f"coap://127.0.0.1:{port}/d/{CLIENT_DEVICE}",
                payload=reading(11),
            )
            response = await asyncio.wait_for(context.request(request).response, 10)
        finally:
            await context.shutdown()
        assert response.code == Code.CREATED
        record = (await seen.raw.wait_for(lambda r: r["device_id"] == CLIENT_DEVICE))[0]
        assert base64.b64decode(record["payload_b64"]) == reading(11)
        parsed = await seen.parsed.wait_for(lambda r: r["id"] == record["id"])
        assert parsed[0]["data"]["temperature"] == 1.1

    async def test_the_documented_aiocoap_client_command_works(
        self, strict: GatewayServer, seen: Topology, documents: dict[str, Any], tmp_path: Path
    ) -> None:
        port = strict.config.bind.port
        basedir = write_context(documents[CLI_DEVICE], tmp_path / CLI_DEVICE)
        credentials = tmp_path / "credentials.json"
        credentials.write_text(
            json.dumps({f"coap://127.0.0.1:{port}/*": {"oscore": {"basedir": f"{basedir}/"}}})
        )
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "aiocoap-client"), "--credentials",
            str(credentials), "-m", "POST", f"coap://127.0.0.1:{port}/d/{CLI_DEVICE}",
            "--payload", "abcdef", stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, output
        record = (await seen.raw.wait_for(lambda r: r["device_id"] == CLI_DEVICE))[0]
        assert base64.b64decode(record["payload_b64"]) == b"abcdef"

    async def test_a_wrong_key_or_an_unknown_kid_gets_401_and_no_record(
        self, strict: GatewayServer, seen: Topology, documents: dict[str, Any],
        peers: dict[str, OscorePeer], tmp_path: Path,
    ) -> None:  # fmt: skip
        port = strict.config.bind.port
        wrong = write_context(documents["osc-2"], tmp_path / "wrong", secret_hex="00" * 16)
        unknown = dict(documents["osc-2"])
        unknown["oscore"] = {**unknown["oscore"], "sender_id_hex": "ffffffffffff"}
        before = refused(strict, "decrypt_failed"), refused(strict, "unknown_kid")
        for basedir in (wrong, write_context(unknown, tmp_path / "unknown")):
            peer = OscorePeer(basedir)
            try:
                answer, _, _ = await send(peer, port, "/d/osc-2", reading(21))
            finally:
                peer.close()
            assert answer.code == Code.UNAUTHORIZED
            assert answer.opt.oscore is None  # refused in clear: nothing to protect it with
        assert (refused(strict, "decrypt_failed"), refused(strict, "unknown_kid")) == (
            before[0] + 1, before[1] + 1,
        )  # fmt: skip
        await marker(peers["osc-2"], port, seen, "osc-2", 22)
        assert raws_of(seen, "osc-2") == [reading(22)]
        assert not [r for r in seen.failed.values() if r["device_id"] == "osc-2"]

    async def test_an_unprotected_contact_of_an_oscore_device_gets_401(
        self, strict: GatewayServer, gateway: GatewayServer, documents: dict[str, Any]
    ) -> None:
        for server in (strict, gateway):  # required, then optional
            async with CoapClient("127.0.0.1", server.config.bind.port, timeout_s=5) as plain:
                answer = await plain.call(2, "/d/osc-3", reading(31))
            assert answer.dotted_code == "4.01"

    async def test_a_context_cannot_speak_for_another_device(
        self, strict: GatewayServer, seen: Topology, peers: dict[str, OscorePeer]
    ) -> None:
        answer, _, request_id = await send(peers["osc-3"], strict.config.bind.port,
                                           "/d/osc-token", reading(32))  # fmt: skip
        assert inner(peers["osc-3"], answer, request_id).code == Code.UNAUTHORIZED

    async def test_other_critical_outer_options_are_still_refused(
        self, strict: GatewayServer, peers: dict[str, OscorePeer]
    ) -> None:
        token = os.urandom(4)
        datagram, _ = peers["osc-3"].request("/d/osc-3", reading(33), mid=_mid(), token=token)
        message = aiocoap.Message.decode(datagram)
        message.direction = Direction.OUTGOING
        message.opt.add_option(OpaqueOption(OptionNumber(65001), b"x"))
        answer = aiocoap.Message.decode(
            await exchange(strict.config.bind.port, message.encode(), token)
        )
        assert answer.code == Code.BAD_OPTION

    async def test_a_rotation_drops_the_old_context_at_once(
        self, strict: GatewayServer, documents: dict[str, Any], tmp_path: Path, gw_db: str
    ) -> None:
        port = strict.config.bind.port
        old = OscorePeer(write_context(documents[ROTATED], tmp_path / "old"))
        try:
            answer, _, rid = await send(old, port, f"/d/{ROTATED}", reading(71))
            assert inner(old, answer, rid).code == Code.CREATED  # its context is cached now
            engine = make_engine(gw_db)
            try:
                repository = SQLCredentialRepository(engine, secrets=SecretBox([KEY_A]))
                rotated = (await repository.rotate(ROTATED)).to_json()
            finally:
                await engine.dispose()
            answer, _, _ = await send(old, port, f"/d/{ROTATED}", reading(72))
            assert answer.code == Code.UNAUTHORIZED and answer.opt.oscore is None
        finally:
            old.close()
        new = OscorePeer(write_context(rotated, tmp_path / "new"))
        try:
            answer, _, rid = await send(new, port, f"/d/{ROTATED}", reading(73))
            assert inner(new, answer, rid).code == Code.CREATED
        finally:
            new.close()

    async def test_a_retransmission_gets_the_same_protected_answer_and_no_second_record(
        self, strict: GatewayServer, seen: Topology, peers: dict[str, OscorePeer]
    ) -> None:
        peer, port = peers["osc-3"], strict.config.bind.port
        token = os.urandom(4)
        datagram, rid = peer.request("/d/osc-3", reading(36), mid=_mid(), token=token)
        before = refused(strict, "replay")
        first, again = await exchange(port, datagram, token, times=2)  # one socket, one id
        assert first == again and inner(peer, aiocoap.Message.decode(first), rid).code == (
            Code.CREATED
        )
        assert refused(strict, "replay") == before
        await marker(peer, port, seen, "osc-3", 37)
        assert raws_of(seen, "osc-3") == [reading(36), reading(37)]


class TestRoutes:
    async def test_a_route_contact_names_the_device_its_context_proved(
        self, strict: GatewayServer, seen: Topology, documents: dict[str, Any], tmp_path: Path
    ) -> None:
        port = strict.config.bind.port
        peer = OscorePeer(write_context(documents[ROUTE_DEVICE], tmp_path / "route"))
        try:
            answer, _, rid = await send(peer, port, "/m", b"osc1" + struct.pack(">h", 81))
            assert inner(peer, answer, rid).code == Code.CREATED
            parsed = await seen.parsed.wait_for(lambda r: r["device_id"] == ROUTE_DEVICE)
            assert parsed[0]["data"]["temperature"] == 8.1
            # The same context, a payload naming another device: a mismatch, not a record.
            answer, _, rid = await send(peer, port, "/m", b"abcd" + struct.pack(">h", 82))
            assert inner(peer, answer, rid).code == Code.FORBIDDEN
        finally:
            peer.close()
        failed = await seen.failed.wait_for(lambda r: r["error"]["kind"] == "device_mismatch")
        assert failed[0]["device_id"] == b"abcd".hex()
        await seen.raw.wait_for(lambda r: r["id"] == parsed[0]["id"])
        await asyncio.sleep(0.3)  # route raw records have no key: any partition
        assert [r["id"] for r in seen.raw.values()] == [parsed[0]["id"]]


class TestCommands:
    async def test_a_command_rides_back_protected_and_only_to_its_device(
        self, strict: GatewayServer, seen: Topology, broker: EmbeddedBroker,
        peers: dict[str, OscorePeer],
    ) -> None:  # fmt: skip
        port = strict.config.bind.port
        request_id, value = command("osc-4")
        await send_command(broker, strict, value)
        await queued(seen, request_id)
        # Another device's context naming osc-4, and a contact in clear: no command.
        answer, _, rid = await send(peers["osc-3"], port, "/d/osc-4", reading(41))
        assert inner(peers["osc-3"], answer, rid).code == Code.UNAUTHORIZED
        async with CoapClient("127.0.0.1", port, timeout_s=5) as plain:
            assert (await plain.call(2, "/d/osc-4", reading(42))).dotted_code == "4.01"
        answer, _, rid = await send(peers["osc-4"], port, "/d/osc-4", reading(43))
        assert answer.opt.oscore is not None and COMMAND_BODY not in answer.payload
        response = inner(peers["osc-4"], answer, rid)
        assert (response.code, response.payload) == (Code.CREATED, COMMAND_BODY)
        sent = await seen.status.wait_for(lambda r: r["status"] == "sent")
        assert [r["request_id"] for r in sent] == [request_id]


class TestReplay:
    async def test_a_replay_is_refused_by_the_gateway_a_second_one_and_after_a_restart(
        self, strict: GatewayServer, second: GatewayServer, seen: Topology,
        peers: dict[str, OscorePeer], gw_db: str, gw_sandbox: SandboxServer,
        broker: EmbeddedBroker,
    ) -> None:  # fmt: skip
        peer, port = peers["osc-1"], strict.config.bind.port
        answer, first, rid = await send(peer, port, "/d/osc-1", reading(51))
        assert inner(peer, answer, rid).code == Code.CREATED
        before = refused(strict, "replay")
        assert (await replay(port, first)).code == Code.UNAUTHORIZED
        assert refused(strict, "replay") == before + 1
        other = second.config.bind.port
        assert (await replay(other, first)).code == Code.UNAUTHORIZED
        # Accepted by the second gateway, then replayed to the first, whose window in
        # memory has not seen it: the database has.
        answer, second_first, rid = await send(peer, other, "/d/osc-1", reading(52))
        assert inner(peer, answer, rid).code == Code.CREATED
        assert (await replay(port, second_first)).code == Code.UNAUTHORIZED
        restart = strict_config(gw_db, gw_sandbox, broker, "-restarted")
        async with GatewayServer(restart) as restarted:
            again = restarted.config.bind.port
            for datagram in (first, second_first):
                assert (await replay(again, datagram)).code == Code.UNAUTHORIZED
            await joined(restarted)
        await marker(peer, port, seen, "osc-1", 53)
        assert raws_of(seen, "osc-1") == [reading(51), reading(52), reading(53)]

    async def test_copies_sent_at_once_to_two_gateways_are_accepted_once(
        self, strict: GatewayServer, second: GatewayServer, seen: Topology,
        peers: dict[str, OscorePeer],
    ) -> None:  # fmt: skip
        peer, port = peers["osc-2"], strict.config.bind.port
        for tag in (61, 62, 63):
            token = os.urandom(4)
            datagram, _ = peer.request("/d/osc-2", reading(tag), mid=_mid(), token=token)
            answers = await asyncio.gather(
                exchange(port, datagram, token),
                exchange(second.config.bind.port, with_mid(datagram, _mid()), token),
            )
            codes = sorted(aiocoap.Message.decode(a).code for a in answers)
            assert codes == sorted([Code.CHANGED, Code.UNAUTHORIZED])  # outer codes
        await marker(peer, port, seen, "osc-2", 64)
        assert sorted(raws_of(seen, "osc-2")) == sorted(reading(t) for t in (61, 62, 63, 64))
