"""Device authentication in `required` mode, end to end: real UDP, DTLS with libcoap's
coap-client-openssl, a real broker, sandbox and database.

Each refused contact is checked for its code, for the absence of any uplink record (a
later good contact of the same device is the marker: records are published in order),
and for not taking the device's command.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import struct
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from preservarium.db.engine import make_engine
from preservarium.identity import AuthKind, SecretBox
from preservarium.identity.tokens import token_hash
from preservarium.repositories import (
    SQLCredentialRepository,
    SQLDeviceRepository,
    SQLParserRepository,
)
from preservarium.settings import DeviceAuthMode, HostPort
from preservarium_gateway.config import GatewayLimits
from preservarium_gateway.server import GatewayServer
from preservarium_sandbox.server import SandboxServer
from preservarium_tools import coapwire as cw
from preservarium_tools.coapwire import CoapClient
from preservarium_tools.embedded.broker import EmbeddedBroker

from tests.gateway.conftest import Topology, gateway_config
from tests.gateway.parsers import THERMO
from tests.gateway.test_commands import command, queued, send_command
from tests.gateway.test_dtls import CLIENT
from tests.sdk.test_identity import KEY_A
from tests.support.kafka import prefix

ROUTE_SERIAL = "61626364"  # identify() of a payload starting with b"abcd"
PSK_ROUTE = "70736b31"  # identify() of b"psk1...": a route device with a PSK
TOKENED = "7778797a"  # identify() of b"wxyz...", a `tokened` device (route /k)
COMMAND_BODY = b"P" + struct.pack(">H", 900)
# A thermo parser whose payloads carry their token after the reading (route /k).
PAYLOAD_TOKEN = """
def token(payload, metadata):
    return payload[6:].decode() or None
"""
# coap-client -v 6 logs the response (piggy-backed, or separate when slow); `-o` writes
# its payload to a file.
ANSWER = re.compile(r"t:(?:ACK|CON) c:(?P<code>[245]\.\d\d)")


def reading(tag: int, serial: bytes = b"\x00\x00\x00\x00") -> bytes:
    """A thermo payload whose temperature tells contacts apart."""
    return serial + struct.pack(">h", tag)


@pytest.fixture(scope="module")
async def secrets(gw_db: str, gw_sandbox: SandboxServer) -> dict[str, Any]:
    engine = make_engine(gw_db)
    await SQLParserRepository(engine).upload("thermo", THERMO)
    await SQLParserRepository(engine).upload("tokened", THERMO + PAYLOAD_TOKEN)
    devices = SQLDeviceRepository(engine)
    credentials = SQLCredentialRepository(engine, secrets=SecretBox([KEY_A]))
    documents: dict[str, Any] = {}
    kinds = {
        "tok-1": AuthKind.TOKEN, "tok-2": AuthKind.TOKEN, "tok-3": AuthKind.TOKEN,
        "psk-1": AuthKind.PSK, "none-1": AuthKind.NONE, ROUTE_SERIAL: AuthKind.TOKEN,
        PSK_ROUTE: AuthKind.PSK,
    }  # fmt: skip
    for device_id, kind in kinds.items():
        await devices.register(device_id, "thermo")
        documents[device_id] = (await credentials.set_credentials(device_id, kind)).to_json()
    await devices.register(TOKENED, "tokened")
    documents[TOKENED] = (await credentials.set_credentials(TOKENED, AuthKind.TOKEN)).to_json()
    await engine.dispose()
    await gw_sandbox.catalog.refresh()
    return documents


@pytest.fixture(scope="module")
async def strict(
    gw_db: str, gw_sandbox: SandboxServer, broker: EmbeddedBroker, secrets: dict[str, Any]
) -> AsyncIterator[GatewayServer]:
    config = gateway_config(
        database_url=gw_db, bootstrap=broker.bootstrap, sandbox_addr=gw_sandbox.config.listen,
        topic_prefix=prefix(), device_auth=DeviceAuthMode.REQUIRED,
        coaps_bind=HostPort("127.0.0.1", 0), secret_keys=(KEY_A,),
    )  # fmt: skip
    config = dataclasses.replace(config, routes={**config.routes, "k": "tokened"})
    async with GatewayServer(config) as server:
        yield server


@pytest.fixture
async def seen(strict: GatewayServer, broker: EmbeddedBroker) -> AsyncIterator[Topology]:
    topology = Topology(broker.bootstrap, strict.config.topics, from_end=True)
    await topology.start()
    yield topology
    await topology.stop()


@pytest.fixture
async def udp(strict: GatewayServer) -> AsyncIterator[CoapClient]:
    async with CoapClient("127.0.0.1", strict.config.bind.port, timeout_s=5) as client:
        yield client


def token(secrets: dict[str, Any], device_id: str) -> list[str]:
    return [f"t={secrets[device_id]['token']}"]


def failures(gateway: GatewayServer, reason: str) -> float:
    value = gateway.metrics.registry.get_sample_value(
        "preservarium_gateway_auth_failures_total", {"reason": reason}
    )
    return value or 0.0


async def only_marker(topics: Topology, device_id: str, marker: int) -> None:
    """The device's raw records since the test began: only the marker contact's."""
    marker_payload = reading(marker)
    raws = await topics.raw.wait_for(
        lambda r: r["device_id"] == device_id and cw_payload(r) == marker_payload
    )
    assert raws
    mine = [r for r in topics.raw.values() if r["device_id"] == device_id]
    assert [cw_payload(r) for r in mine] == [marker_payload]
    assert not [r for r in topics.failed.values() if r["device_id"] == device_id]


def cw_payload(record: dict[str, Any]) -> bytes:
    import base64

    return base64.b64decode(record["payload_b64"])


class TestTokens:
    async def test_the_right_token_is_accepted_and_never_reaches_the_parser(
        self, udp: CoapClient, seen: Topology, secrets: dict[str, Any], strict: GatewayServer
    ) -> None:
        query = [*token(secrets, "tok-1"), "x=1"]
        response = await udp.call(cw.POST, "/d/tok-1", reading(1), query=query)
        assert response.dotted_code == "2.01"
        parsed = (await seen.parsed.wait_for(lambda r: r["device_id"] == "tok-1"))[0]
        assert parsed["data"]["query"] == {"x": "1"}
        await strict.admission.drain()
        engine = make_engine(strict.config.database_url)
        try:
            repository = SQLCredentialRepository(engine, secrets=SecretBox([KEY_A]))
            assert (await repository.summary("tok-1")).last_authenticated_at is not None
            assert (await repository.summary("tok-2")).last_authenticated_at is None
        finally:
            await engine.dispose()

    @pytest.mark.parametrize("case", ["wrong", "missing", "another_devices", "empty"])
    async def test_a_bad_token_gets_401_and_no_record(
        self, udp: CoapClient, seen: Topology, secrets: dict[str, Any], case: str,
        strict: GatewayServer,
    ) -> None:  # fmt: skip
        queries = {
            "wrong": ["t=" + "A" * 43],
            "missing": [],
            "another_devices": token(secrets, "tok-2"),
            "empty": ["t="],
        }
        before = failures(strict, "bad_token") + failures(strict, "missing")
        response = await udp.call(cw.POST, "/d/tok-1", reading(2), query=queries[case])
        assert response.dotted_code == "4.01"
        assert failures(strict, "bad_token") + failures(strict, "missing") == before + 1
        good = await udp.call(cw.POST, "/d/tok-1", reading(3), query=token(secrets, "tok-1"))
        assert good.dotted_code == "2.01"
        await only_marker(seen, "tok-1", 3)

    async def test_a_rotation_reaches_a_running_gateway_at_its_next_reload(
        self, gw_db: str, gw_sandbox: SandboxServer, broker: EmbeddedBroker,
        secrets: dict[str, Any],
    ) -> None:  # fmt: skip
        """The CLI rotates in the database; every gateway sees it at its directory reload
        (every 10 s by default, 0.5 s here). A device of its own: the module's gateways see
        the rotation too, and other tests use the module's devices' tokens."""
        assert GatewayLimits().directory_refresh_s <= 10
        config = gateway_config(
            database_url=gw_db, bootstrap=broker.bootstrap,
            sandbox_addr=gw_sandbox.config.listen, topic_prefix=prefix(),
            device_auth=DeviceAuthMode.REQUIRED, secret_keys=(KEY_A,), directory_refresh_s=0.5,
        )  # fmt: skip
        async with (
            GatewayServer(config) as running,
            CoapClient("127.0.0.1", config.bind.port, timeout_s=5) as client,
        ):
            engine = make_engine(gw_db)
            try:
                await SQLDeviceRepository(engine).register("tok-rot", "thermo")
                repository = SQLCredentialRepository(engine, secrets=SecretBox([KEY_A]))
                first = await repository.set_credentials("tok-rot", AuthKind.TOKEN)
                old = [f"t={first.to_json()['token']}"]
            finally:
                await engine.dispose()
            await running.directory.reload()
            assert (
                await client.call(cw.POST, "/d/tok-rot", reading(7), query=old)
            ).dotted_code == ("2.01")
            engine = make_engine(gw_db)
            try:
                repository = SQLCredentialRepository(engine, secrets=SecretBox([KEY_A]))
                new = [f"t={(await repository.rotate('tok-rot')).to_json()['token']}"]
            finally:
                await engine.dispose()
            codes = []
            for _ in range(100):  # generous: 10 s, 20 reloads
                accepted = await client.call(cw.POST, "/d/tok-rot", reading(9), query=new)
                codes.append(accepted.dotted_code)
                if accepted.dotted_code == "2.01":
                    break
                await asyncio.sleep(0.1)
            assert codes[-1] == "2.01" and set(codes[:-1]) <= {"4.01"}
            refused = await client.call(cw.POST, "/d/tok-rot", reading(8), query=old)
            assert refused.dotted_code == "4.01"
            assert running.directory.auth_entry("tok-rot").token_sha256 == token_hash(new[0][2:])

    async def test_a_device_registered_with_none_cannot_authenticate(
        self, udp: CoapClient, secrets: dict[str, Any]
    ) -> None:
        assert (await udp.call(cw.POST, "/d/none-1", reading(4))).dotted_code == "4.01"
        wrong = await udp.call(cw.POST, "/d/none-1", reading(4), query=token(secrets, "tok-1"))
        assert wrong.dotted_code == "4.01"

    async def test_a_psk_device_over_plain_coap_gets_401(self, udp: CoapClient) -> None:
        assert (await udp.call(cw.POST, "/d/psk-1", reading(5))).dotted_code == "4.01"


class TestCommandsGoOnlyToTheirDevice:
    async def test_on_d_paths_wrong_and_missing_tokens_take_no_command(
        self, udp: CoapClient, seen: Topology, secrets: dict[str, Any],
        broker: EmbeddedBroker, strict: GatewayServer,
    ) -> None:  # fmt: skip
        request_id, value = command("tok-3")
        await send_command(broker, strict, value)
        await queued(seen, request_id)
        for query in ([], ["t=" + "B" * 43], token(secrets, "tok-1")):
            refused = await udp.call(cw.POST, "/d/tok-3", reading(6), query=query)
            assert refused.dotted_code == "4.01" and refused.payload != COMMAND_BODY
        ok = await udp.call(cw.POST, "/d/tok-3", reading(7), query=token(secrets, "tok-3"))
        assert ok.dotted_code == "2.01" and ok.payload == COMMAND_BODY
        sent = await seen.status.wait_for(lambda r: r["status"] == "sent")
        assert [r["request_id"] for r in sent] == [request_id]

    async def test_on_routes_wrong_and_missing_tokens_take_no_command(
        self, udp: CoapClient, seen: Topology, secrets: dict[str, Any],
        broker: EmbeddedBroker, strict: GatewayServer,
    ) -> None:  # fmt: skip
        request_id, value = command(ROUTE_SERIAL)
        await send_command(broker, strict, value)
        await queued(seen, request_id)
        payload = reading(8, b"abcd")
        for query in ([], ["t=" + "C" * 43], token(secrets, "tok-1")):
            refused = await udp.call(cw.POST, "/m", payload, query=query)
            assert refused.dotted_code == "4.01" and refused.payload != COMMAND_BODY
        ok = await udp.call(cw.POST, "/m", payload, query=token(secrets, ROUTE_SERIAL))
        assert ok.dotted_code == "2.01" and ok.payload == COMMAND_BODY
        parsed = (await seen.parsed.wait_for(lambda r: r["device_id"] == ROUTE_SERIAL))[0]
        assert parsed["data"]["query"] == {}
        # Only the authenticated contact was recorded, raw and parsed. The raw topic has a
        # reader of its own, which may be behind the parsed one's: wait for this raw too.
        await seen.raw.wait_for(lambda r: r["id"] == parsed["id"])
        raws = [r for r in seen.raw.values() if r["path"] == "m"]
        assert [r["id"] for r in raws] == [parsed["id"]]

    async def test_a_token_in_the_payload_found_by_the_parsers_token(
        self, udp: CoapClient, seen: Topology, secrets: dict[str, Any]
    ) -> None:
        right = secrets[TOKENED]["token"].encode()
        for token in (b"", b"W" * 43, secrets["tok-1"]["token"].encode()):
            refused = await udp.call(cw.POST, "/k", reading(10, b"wxyz") + token)
            assert refused.dotted_code == "4.01"
        ok = await udp.call(cw.POST, "/k", reading(11, b"wxyz") + right)
        assert ok.dotted_code == "2.01"
        parsed = (await seen.parsed.wait_for(lambda r: r["device_id"] == TOKENED))[0]
        assert "token" not in parsed["data"]
        await seen.raw.wait_for(lambda r: r["id"] == parsed["id"])
        raws = [r for r in seen.raw.values() if r["path"] == "k"]
        assert [r["id"] for r in raws] == [parsed["id"]]


class TestDtls:
    async def test_the_right_key_gets_201_recorded_as_the_device(
        self, strict: GatewayServer, seen: Topology, secrets: dict[str, Any]
    ) -> None:
        assert strict.dtls is not None
        key = secrets["psk-1"]["psk"]
        assert await dtls_to(strict.dtls.port, "psk-1", key, "/d/psk-1", "data") == ("2.01", b"")
        raw = (await seen.raw.wait_for(lambda r: r["device_id"] == "psk-1"))[0]
        assert cw_payload(raw) == b"data"

    async def test_a_wrong_key_reaches_nothing(
        self, strict: GatewayServer, seen: Topology, secrets: dict[str, Any]
    ) -> None:
        assert strict.dtls is not None
        wrong = await dtls_to(strict.dtls.port, "psk-1", "x" * 16, "/d/psk-1", "data", wait_s=3)
        assert wrong is None
        await asyncio.sleep(0.2)
        assert not [r for r in seen.raw.values() if r["device_id"] == "psk-1"]

    async def test_a_session_of_one_device_cannot_speak_for_another(
        self, strict: GatewayServer, secrets: dict[str, Any]
    ) -> None:
        assert strict.dtls is not None
        key = secrets["psk-1"]["psk"]
        answer = await dtls_to(strict.dtls.port, "psk-1", key, "/d/tok-1", "data")
        assert answer is not None and answer[0] == "4.01"

    async def test_what_comes_out_of_dtls_is_sorted_and_deduplicated_like_plain_coap(
        self, gw_db: str, gw_sandbox: SandboxServer, broker: EmbeddedBroker,
        secrets: dict[str, Any],
    ) -> None:  # fmt: skip
        config = gateway_config(
            database_url=gw_db, bootstrap=broker.bootstrap,
            sandbox_addr=gw_sandbox.config.listen, topic_prefix=prefix(),
            device_auth=DeviceAuthMode.REQUIRED, coaps_bind=HostPort("127.0.0.1", 0),
            secret_keys=(KEY_A,), payload_bytes=16, options_bytes=64,
        )  # fmt: skip
        async with GatewayServer(config) as small:
            assert small.dtls is not None
            key, port = secrets["psk-1"]["psk"], small.dtls.port
            oversize = small.metrics.datagrams_refused.labels("oversize")
            big = "x" * (config.limits.max_datagram_bytes + 1)  # no Block1 from libcoap yet
            assert (await dtls_to(port, "psk-1", key, "/d/psk-1", big))[0] == "4.13"
            assert oversize._value.get() == 1  # refused by the guard, before aiocoap
            assert small.dedup_entries == 0  # never reached aiocoap
            assert (await dtls_to(port, "psk-1", key, "/d/psk-1", "data"))[0] == "2.01"
            assert small.dedup_entries == 1  # its entry, in the bounded cache

    async def test_a_dtls_device_gets_its_command(
        self, strict: GatewayServer, seen: Topology, secrets: dict[str, Any],
        broker: EmbeddedBroker,
    ) -> None:  # fmt: skip
        assert strict.dtls is not None
        request_id, value = command(PSK_ROUTE)
        await send_command(broker, strict, value)
        await queued(seen, request_id)
        key = secrets[PSK_ROUTE]["psk"]
        # A session of another device first: nothing.
        refused = await dtls_to(strict.dtls.port, "psk-1", secrets["psk-1"]["psk"],
                                f"/d/{PSK_ROUTE}", "psk1AB")  # fmt: skip
        assert refused is not None and refused[0] == "4.01"
        answer = await dtls_to(strict.dtls.port, PSK_ROUTE, key, f"/d/{PSK_ROUTE}", "psk1AB")
        assert answer == ("2.01", COMMAND_BODY)
        sent = await seen.status.wait_for(lambda r: r["status"] == "sent")
        assert [r["request_id"] for r in sent] == [request_id]

    async def test_a_route_contact_must_name_the_device_it_authenticated_as(
        self, strict: GatewayServer, seen: Topology, secrets: dict[str, Any]
    ) -> None:
        assert strict.dtls is not None
        key = secrets[PSK_ROUTE]["psk"]
        own = await dtls_to(strict.dtls.port, PSK_ROUTE, key, "/m", "psk1AB")
        assert own is not None and own[0] == "2.01"
        assert await seen.parsed.wait_for(lambda r: r["device_id"] == PSK_ROUTE)
        other = await dtls_to(strict.dtls.port, PSK_ROUTE, key, "/m", "abcdAB")
        assert other is not None and other[0] == "4.03"
        failed = (await seen.failed.wait_for(lambda r: r["device_id"] == ROUTE_SERIAL))[0]
        assert failed["error"]["kind"] == "device_mismatch"
        assert not [r for r in seen.parsed.values() if r["device_id"] == ROUTE_SERIAL]


async def dtls_to(
    port: int, identity: str, key: str, path: str, data: str, *, wait_s: int = 10
) -> Any:
    """coap-client-openssl POST over DTLS-PSK to any path: (code, payload) or None (after
    `wait_s`: a refused handshake leaves the client waiting that long)."""
    with tempfile.TemporaryDirectory() as folder:
        body = Path(folder) / "body"
        process = await asyncio.create_subprocess_exec(
            CLIENT, "-m", "post", "-u", identity, "-k", key, "-B", str(wait_s), "-v", "6",
            "-o", str(body), f"coaps://127.0.0.1:{port}{path}", "-e", data,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await process.communicate()
        found = ANSWER.search(output.decode(errors="replace"))
        payload = body.read_bytes() if body.exists() else b""
    return (found["code"], payload) if found else None
