"""Rate limits: per source, per device, and failed authentications per source, harder.

The unit tests drive the limiter with a fake clock; the gateway tests send real UDP from
several loopback addresses (127.0.0.2, .3, .4 are all this host).
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator

import pytest
from preservarium.db.engine import make_engine
from preservarium.identity import AuthKind, SecretBox
from preservarium.repositories import (
    SQLCredentialRepository,
    SQLDeviceRepository,
    SQLParserRepository,
)
from preservarium_gateway.rate_limits import KeyedRateLimiter, source_key
from preservarium_gateway.server import GatewayServer
from preservarium_sandbox.server import SandboxServer
from preservarium_tools import coapwire as cw
from preservarium_tools.coapwire import CoapClient
from preservarium_tools.embedded.broker import EmbeddedBroker

from tests.gateway.conftest import gateway_config
from tests.gateway.parsers import THERMO
from tests.sdk.test_identity import KEY_A
from tests.support.kafka import prefix

READING = bytes(4) + struct.pack(">h", 200)
MAX_AGE = 14
FLOOD = 600
FLOOD_WINDOW = 16


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestLimiter:
    def test_a_minutes_worth_then_429_until_a_token_refills(self) -> None:
        clock = Clock()
        limiter = KeyedRateLimiter(per_min=6, max_entries=10, clock=clock)
        assert [limiter.take("a") for _ in range(6)] == [None] * 6
        assert limiter.take("a") == 10  # one token every 10 s
        assert limiter.take("b") is None  # other keys are unaffected
        clock.now += 10
        assert limiter.take("a") is None
        assert limiter.take("a") == 10

    def test_zero_means_no_limit_and_holds_nothing(self) -> None:
        limiter = KeyedRateLimiter(per_min=0, max_entries=10)
        assert all(limiter.take("a") is None for _ in range(1000))
        assert len(limiter) == 0

    def test_the_table_is_bounded(self) -> None:
        limiter = KeyedRateLimiter(per_min=1, max_entries=100)
        for n in range(10_000):
            limiter.take(f"10.0.{n // 256}.{n % 256}")
        assert len(limiter) == 100

    def test_retry_after_does_not_spend(self) -> None:
        limiter = KeyedRateLimiter(per_min=1, max_entries=10, clock=Clock())
        assert limiter.retry_after("a") is None
        assert limiter.take("a") is None
        assert limiter.retry_after("a") == 60

    @pytest.mark.parametrize(
        ("remote", "key"),
        [
            ("127.0.0.2:5683", "127.0.0.2"),
            ("[2001:db8::1]:5683", "2001:db8::/64"),
            ("[2001:db8::ffff:1]:40000", "2001:db8::/64"),
            ("?", "?"),
        ],
    )
    def test_sources_are_addresses_and_ipv6_slash_64s(self, remote: str, key: str) -> None:
        assert source_key(remote) == key


@pytest.fixture(scope="module")
async def limited(
    gw_db: str, gw_sandbox: SandboxServer, broker: EmbeddedBroker
) -> AsyncIterator[tuple[GatewayServer, str]]:
    engine = make_engine(gw_db)
    await SQLParserRepository(engine).upload("thermo", THERMO)
    for device in ("flood-1", "calm-1", "busy-1", "guessed-1"):
        await SQLDeviceRepository(engine).register(device, "thermo")
    credentials = SQLCredentialRepository(engine, secrets=SecretBox([KEY_A]))
    document = (await credentials.set_credentials("guessed-1", AuthKind.TOKEN)).to_json()
    await engine.dispose()
    await gw_sandbox.catalog.refresh()
    config = gateway_config(
        database_url=gw_db, bootstrap=broker.bootstrap, sandbox_addr=gw_sandbox.config.listen,
        topic_prefix=prefix(), source_rate_per_min=30, device_rate_per_min=10,
        auth_failures_per_min=5,
    )  # fmt: skip
    async with GatewayServer(config) as server:
        yield server, str(document["token"])


def client(gateway: GatewayServer, source: str) -> CoapClient:
    return CoapClient("127.0.0.1", gateway.config.bind.port, timeout_s=5, local_host=source)


def limited_count(gateway: GatewayServer, scope: str) -> float:
    value = gateway.metrics.registry.get_sample_value(
        "preservarium_gateway_rate_limited_total", {"scope": scope}
    )
    return value or 0.0


@pytest.mark.serial
async def test_a_flood_from_one_source_is_429_and_does_not_slow_another(
    limited: tuple[GatewayServer, str],
) -> None:
    gateway, _ = limited
    codes: list[str] = []
    async with client(gateway, "127.0.0.2") as flood, client(gateway, "127.0.0.3") as calm:

        async def flooder() -> None:
            # A window of requests in flight, as fast as answers come back (a burst far
            # beyond the kernel's socket buffer would drop everyone's datagrams alike).
            while len(codes) < FLOOD:
                codes.append((await flood.call(cw.POST, "/d/flood-1", READING)).dotted_code)

        flooding = asyncio.gather(*(flooder() for _ in range(FLOOD_WINDOW)))
        await asyncio.sleep(0.1)
        started = time.perf_counter()
        calm_code = (await calm.call(cw.POST, "/d/calm-1", READING)).dotted_code
        calm_s = time.perf_counter() - started
        await flooding
    assert calm_code == "2.01"
    assert calm_s < 1.0, f"a calm device waited {calm_s:.3f} s behind a flood"
    # Of the flood, at most the device's own 10 a minute got in; the rest is 4.29.
    assert codes.count("2.01") <= 10
    assert codes.count("4.29") >= len(codes) - 10
    assert limited_count(gateway, "source") + limited_count(gateway, "device") >= FLOOD - 10


async def test_429_carries_max_age(limited: tuple[GatewayServer, str]) -> None:
    gateway, _ = limited
    async with client(gateway, "127.0.0.5") as busy:
        codes = [(await busy.call(cw.POST, "/d/busy-1", READING)) for _ in range(12)]
    refused = [message for message in codes if message.dotted_code == "4.29"]
    assert refused, "the device's 10 a minute were not enforced"
    max_age = refused[0].uint_option(MAX_AGE)
    assert max_age is not None and 1 <= max_age <= 60


async def test_failed_authentications_are_limited_harder(
    limited: tuple[GatewayServer, str],
) -> None:
    gateway, good_token = limited
    async with client(gateway, "127.0.0.4") as guesser:
        for n in range(5):
            guess = await guesser.call(cw.POST, "/d/guessed-1", READING, query=[f"t=g{n}"])
            assert guess.dotted_code == "4.01"
        # The source's budget of failures is spent: even the right token waits now, and
        # the check is not even made (no lookup, no comparison).
        right = await guesser.call(cw.POST, "/d/guessed-1", READING, query=[f"t={good_token}"])
        assert right.dotted_code == "4.29"
    assert limited_count(gateway, "auth_failures") >= 1
    async with client(gateway, "127.0.0.6") as device:
        ok = await device.call(cw.POST, "/d/guessed-1", READING, query=[f"t={good_token}"])
        assert ok.dotted_code == "2.01"
