"""The sandbox as a service: isolation, reload, quarantine, dead workers, clean state."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid

import pytest
from preservarium.repositories import SQLParserRepository
from preservarium.sandbox_client import SandboxClient, SandboxUnavailableError
from preservarium_sandbox.limits import Limits
from preservarium_sandbox.server import SandboxServer

from tests.sandbox.conftest import QUARANTINE, contact, sandbox_config, wait_for_version
from tests.sandbox.support import alive, kill, outcome
from tests.support.clock import SteppedClock

ECHO = "def parse(payload, metadata):\n    return {'n': len(payload), 'v': VERSION}\nVERSION = 1\n"
LOOP = "def parse(payload, metadata):\n    while True:\n        pass\n"


def new_type() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


async def test_parse_uses_the_active_version(
    client: SandboxClient, parsers: SQLParserRepository
) -> None:
    device_type = new_type()
    await parsers.upload(device_type, ECHO)
    await wait_for_version(client, device_type, 1)
    response = await client.parse(contact(device_type, b"abc"))
    assert outcome(response) == ("ok", {"n": 3, "v": 1})
    assert (response.parser.name, response.parser.version) == (device_type, 1)


async def test_a_new_version_serves_within_two_seconds(
    client: SandboxClient, parsers: SQLParserRepository
) -> None:
    device_type = new_type()
    await parsers.upload(device_type, ECHO)
    await wait_for_version(client, device_type, 1)
    await parsers.upload(device_type, ECHO.replace("VERSION = 1", "VERSION = 2"))
    took = await wait_for_version(client, device_type, 2)
    assert took < 2.0
    assert outcome(await client.parse(contact(device_type)))[1]["v"] == 2
    await parsers.activate(device_type, 1)
    assert await wait_for_version(client, device_type, 1) < 2.0


@pytest.mark.serial
async def test_a_looping_parser_costs_other_parsers_nothing(
    client: SandboxClient, parsers: SQLParserRepository, sandbox: SandboxServer
) -> None:
    good, bad = new_type(), new_type()
    await parsers.upload(bad, LOOP)
    await parsers.upload(good, ECHO)
    await wait_for_version(client, good, 1)  # uploaded last: the looping one serves too
    timeout_s = sandbox.config.limits.timeout_ms / 1000

    async def keep_looping() -> list[str]:
        kinds = []
        for _ in range(4):
            kinds.append(outcome(await client.parse(contact(bad)))[0])
        return kinds

    async def good_calls() -> list[float]:
        latencies = []
        for _ in range(40):
            started = time.perf_counter()
            response = await client.parse(contact(good, b"xy"))
            latencies.append(time.perf_counter() - started)
            assert outcome(response) == ("ok", {"n": 2, "v": 1})
            await asyncio.sleep(0.005)
        return latencies

    bad_kinds, latencies = await asyncio.gather(keep_looping(), good_calls())
    assert set(bad_kinds) <= {"timeout", "quarantined"} and "timeout" in bad_kinds
    # Never held behind the runaway: well under one timeout even at the worst.
    assert max(latencies) < timeout_s


@pytest.mark.serial
async def test_quarantine_enters_and_ends(
    client: SandboxClient, parsers: SQLParserRepository, sandbox_clock: SteppedClock
) -> None:
    device_type, other = new_type(), new_type()
    await parsers.upload(device_type, LOOP)
    await parsers.upload(other, ECHO)
    await wait_for_version(client, other, 1)
    kinds = [
        outcome(await client.parse(contact(device_type)))[0] for _ in range(QUARANTINE.threshold)
    ]
    assert kinds == ["timeout"] * QUARANTINE.threshold
    started = time.perf_counter()
    assert outcome(await client.parse(contact(device_type)))[0] == "quarantined"
    assert time.perf_counter() - started < 0.05
    assert outcome(await client.parse(contact(other)))[0] == "ok"
    sandbox_clock.advance(QUARANTINE.cooldown_s)
    assert outcome(await client.parse(contact(device_type)))[0] == "timeout"
    assert outcome(await client.parse(contact(device_type)))[0] == "quarantined"


async def test_a_fixed_version_is_not_quarantined(
    client: SandboxClient, parsers: SQLParserRepository
) -> None:
    device_type = new_type()
    await parsers.upload(device_type, LOOP)
    await wait_for_version(client, device_type, 1)
    for _ in range(QUARANTINE.threshold + 1):
        await client.parse(contact(device_type))
    await parsers.upload(device_type, ECHO)
    await wait_for_version(client, device_type, 2)
    assert outcome(await client.parse(contact(device_type)))[0] == "ok"


async def test_runtime_errors_never_quarantine(client: SandboxClient) -> None:
    source = "def parse(payload, metadata):\n    raise ValueError('bad payload')\n"
    for _ in range(QUARANTINE.threshold + 2):
        response = await client.test_parser(source, contact=contact("test"))
        assert outcome(response)[0] == "runtime_error"


async def test_nothing_a_call_stores_is_seen_by_the_next(
    client: SandboxClient, parsers: SQLParserRepository
) -> None:
    source = (
        "SEEN = []\n"
        "import json\n"
        "def parse(payload, metadata, cache={}):\n"
        "    SEEN.append(1)\n"
        "    cache[len(cache)] = 1\n"
        "    metadata['query']['x'] = 1\n"
        "    return {'seen': len(SEEN), 'cache': len(cache)}\n"
    )
    device_type = new_type()
    await parsers.upload(device_type, source)
    await wait_for_version(client, device_type, 1)
    answers = [outcome(await client.parse(contact(device_type)))[1] for _ in range(6)]
    assert answers == [{"seen": 1, "cache": 1}] * 6


async def test_a_parser_cannot_write_to_a_vetted_module(client: SandboxClient) -> None:
    writer = "import json\ndef parse(payload, metadata):\n    json.loads = None\n    return {}\n"
    assert outcome(await client.test_parser(writer, contact=contact("test")))[0] == "runtime_error"
    reader = "import json\ndef parse(payload, metadata):\n    return json.loads('{\"a\": 1}')\n"
    for _ in range(3):
        assert outcome(await client.test_parser(reader, contact=contact("test"))) == (
            "ok",
            {"a": 1},
        )


async def test_a_worker_killed_from_outside_is_replaced(
    client: SandboxClient, sandbox: SandboxServer, parsers: SQLParserRepository
) -> None:
    device_type = new_type()
    await parsers.upload(device_type, "def parse(payload, metadata):\n    return {'ok': True}\n")
    await wait_for_version(client, device_type, 1)
    before = sandbox.pool.pids
    for pid in before:
        kill(pid, signal.SIGKILL)
    kinds = [outcome(await client.parse(contact(device_type)))[0] for _ in range(8)]
    assert kinds[-1] == "ok"
    assert set(kinds) <= {"ok", "runtime_error"}
    deadline = time.monotonic() + 10
    while len(sandbox.pool.pids) < len(before) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    assert len(sandbox.pool.pids) == len(before)
    assert not set(sandbox.pool.pids) & set(before)
    assert not any(alive(pid) for pid in before)


async def test_in_flight_calls_finish_on_stop(sandbox_db: str) -> None:
    slow = (
        "def parse(payload, metadata):\n    n = 0\n"
        "    for i in range(300000):\n        n += i\n    return {'n': n}\n"
    )
    server = SandboxServer(sandbox_config(sandbox_db))
    await server.start()
    async with SandboxClient(server.config.listen, timeout_s=10) as client:
        call = asyncio.create_task(client.test_parser(slow, contact=contact("test")))
        await asyncio.sleep(0.02)
        await server.stop()
        result = outcome(await call)
        assert result[0] in {"ok", "timeout"}, result
        with pytest.raises(SandboxUnavailableError):
            await client.test_parser(slow, contact=contact("test"), timeout_s=0.5)


async def test_parse_stream_matches_answers_and_recovers_from_a_restart(
    sandbox_db: str, parsers: SQLParserRepository
) -> None:
    device_type = new_type()
    await parsers.upload(device_type, ECHO)
    # Nothing here is about limits: a generous one keeps a loaded machine from turning
    # a slow echo into a timeout.
    config = sandbox_config(sandbox_db, limits=Limits(timeout_ms=5000, memory_mb=256))
    server = SandboxServer(config)
    await server.start()
    try:
        async with SandboxClient(config.listen, timeout_s=15, streams=2) as client:
            await wait_for_version(client, device_type, 1)
            payloads = [bytes(n) for n in range(40)]
            answers = await asyncio.gather(
                *(client.parse(contact(device_type, p)) for p in payloads)
            )
            assert [outcome(a) for a in answers] == [("ok", {"n": n, "v": 1}) for n in range(40)]
            await server.stop()
            with pytest.raises(SandboxUnavailableError):
                await client.parse(contact(device_type), timeout_s=1)
            server = SandboxServer(config)
            await server.start()
            for _ in range(50):
                try:
                    response = await client.parse(contact(device_type, b"ab"), timeout_s=1)
                    break
                except SandboxUnavailableError:
                    await asyncio.sleep(0.1)
            assert outcome(response) == ("ok", {"n": 2, "v": 1})
    finally:
        await server.stop()


async def test_a_failing_version_gets_one_worker_at_a_time(
    client: SandboxClient, parsers: SQLParserRepository, sandbox: SandboxServer
) -> None:
    bad = new_type()
    await parsers.upload(bad, LOOP)
    await wait_for_version(client, bad, 1)  # one timeout: now on probation
    started = time.perf_counter()
    await asyncio.gather(*(client.parse(contact(bad)) for _ in range(2)))
    # Two concurrent calls of a version on probation run one after the other.
    assert time.perf_counter() - started >= 2 * sandbox.config.limits.timeout_ms / 1000


@pytest.mark.serial
async def test_calls_queued_behind_a_version_being_benched_never_run(
    client: SandboxClient, parsers: SQLParserRepository, sandbox: SandboxServer
) -> None:
    bad = new_type()
    await parsers.upload(bad, LOOP)
    await wait_for_version(client, bad, 1)  # one timeout: on probation, one call at a time
    started = time.perf_counter()
    answers = await asyncio.gather(*(client.parse(contact(bad)) for _ in range(12)))
    elapsed = time.perf_counter() - started
    kinds = [outcome(answer)[0] for answer in answers]
    # Two more timeouts bench the version; the ten calls queued behind them are answered
    # `quarantined` without running (before, each cost a worker its whole timeout).
    assert kinds.count("timeout") <= 3 and kinds.count("quarantined") >= 9, kinds
    assert elapsed < 10 * sandbox.config.limits.timeout_ms / 1000, elapsed
