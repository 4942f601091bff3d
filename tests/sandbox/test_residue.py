"""Nothing a call makes outlives the call: caches of vetted modules, worker memory.

Through the real service: parsers that try to pin memory in the vetted modules' caches
run on every worker, then another parser's legitimate large allocation must succeed.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from preservarium.sandbox_client import SandboxClient
from preservarium_sandbox.engine.facades import VETTED_MODULES, exact
from preservarium_sandbox.engine.residue import forget_call_state
from preservarium_sandbox.limits import Limits
from preservarium_sandbox.server import SandboxServer
from preservarium_sandbox.worker.footprint import Footprint

from tests.sandbox.conftest import contact, sandbox_config
from tests.sandbox.support import outcome
from tests.support.contacts import unix

MEMORY_MB = 160
PIN_MB = 40
VICTIM_MB = 80
# Legal for a parser on a clean worker (which starts at about 25 MiB), impossible once
# two calls' worth of PIN_MB stay pinned.
VICTIM = (
    "def parse(payload, metadata):\n"
    f"    block = bytearray({VICTIM_MB} * 1024 * 1024)\n"
    "    return {'n': len(block)}\n"
)
PINNING = """
import datetime
import json
import re
import struct

class Text(str):
    blob = b"x" * (PIN_MB * 1024 * 1024)

class Flag(int):
    blob = b"x" * (PIN_MB * 1024 * 1024)

def parse(payload, metadata):
    salt = str(metadata["received_at"]) + SALT
    CALL
    return {}
"""
CALLS = {
    "re_compile": "re.compile(Text('a' + salt))",
    "re_match": "re.match(Text('b' + salt), 'b')",
    "re_flags": "re.compile('c' + salt, Flag(0))",
    "re_sub_template": "re.compile('(d)').sub(Text('\\\\1' + salt), 'd')",
    "re_module_sub": "re.sub('(e)', Text('\\\\1' + salt), 'e')",
    "struct_format": "struct.pack(Text('>I' + 'x' * (len(salt) % 7)), 1)",
    "strptime_format": "datetime.datetime.strptime('2020' + salt, Text('%Y' + salt))",
    "json_text": "json.loads(Text('[' + str(len(salt)) + ']'))",
}


def pinning(call: str) -> str:
    return PINNING.replace("PIN_MB", str(PIN_MB)).replace("CALL", CALLS[call])


@pytest.fixture(scope="module")
async def roomy(sandbox_db: str) -> AsyncIterator[SandboxServer]:
    """A sandbox whose calls have time to fill (and pin) a good part of the memory."""
    limits = Limits(timeout_ms=2000, memory_mb=MEMORY_MB)
    async with SandboxServer(sandbox_config(sandbox_db, limits=limits)) as server:
        yield server


@pytest.fixture(scope="module")
async def roomy_client(roomy: SandboxServer) -> AsyncIterator[SandboxClient]:
    async with SandboxClient(roomy.config.listen, timeout_s=30) as created:
        yield created


async def run(
    client: SandboxClient, source: str, received_at: int = 1_700_000_000
) -> tuple[str, Any]:
    response = await client.test_parser(
        source, contact=contact("test", received_at=unix(received_at))
    )
    return outcome(response)


@pytest.mark.parametrize("call", sorted(CALLS))
async def test_a_parser_cannot_pin_memory_in_a_vetted_modules_cache(
    call: str, roomy: SandboxServer, roomy_client: SandboxClient
) -> None:
    attacker = pinning(call).replace("SALT", repr(call))
    workers = roomy.config.trial.workers + roomy.config.trial.spares
    assert (await run(roomy_client, attacker))[0] == "ok"  # compiled on one worker
    before = set(roomy.trials.pool.pids)
    for n in range(2 * workers):  # the idle queue is FIFO: two pins on every worker
        assert (await run(roomy_client, attacker, 1_700_000_001 + n))[0] == "ok"
    # Not left to the footprint check: the caches were cleaned, no worker was replaced.
    assert set(roomy.trials.pool.pids) == before
    for _ in range(workers):
        assert await run(roomy_client, VICTIM) == ("ok", {"n": VICTIM_MB * 1024 * 1024})


STRUCT_HOARD = (
    "import struct\n"
    "def parse(payload, metadata):\n"
    "    return {'n': struct.calcsize('B' * 1500000)}\n"
)


async def test_a_worker_left_over_its_memory_baseline_is_replaced(
    roomy: SandboxServer, roomy_client: SandboxClient
) -> None:
    # struct caches the compiled format (32 bytes a code: about 46 MiB, over the 32 MiB
    # slack) under an exact str key:
    # no cache hygiene drops that, the footprint check after the call does.
    before = set(roomy.trials.pool.pids)
    assert await run(roomy_client, STRUCT_HOARD) == ("ok", {"n": 1500000})
    assert set(roomy.trials.pool.pids) != before
    for _ in range(roomy.config.workers + roomy.config.spares):
        assert await run(roomy_client, VICTIM) == ("ok", {"n": VICTIM_MB * 1024 * 1024})


def test_the_footprint_sees_memory_kept_and_given_back() -> None:
    footprint = Footprint(slack_mb=16)
    kept = bytearray(64 * 1024 * 1024)
    assert footprint.grown()
    del kept
    assert not footprint.grown()


class _Text(str):
    pass


class _Flag(int):
    pass


def test_the_re_and_struct_facades_cache_only_exact_types() -> None:
    rx, struct = VETTED_MODULES["re"], VETTED_MODULES["struct"]
    rx.compile(_Text("residue-a"), _Flag(0))  # type: ignore[attr-defined]
    rx.search(_Text("residue-b"), "x", flags=_Flag(0))  # type: ignore[attr-defined]
    rx.sub(_Text("residue-c"), "", "x", 0, _Flag(0))  # type: ignore[attr-defined]
    assert struct.calcsize(_Text(">H")) == 2  # type: ignore[attr-defined]
    cached = [key for key in re._cache if "residue" in str(key[1])]  # type: ignore[attr-defined]
    assert len(cached) == 3
    assert all(type(pattern) is str and type(flags) is int for _, pattern, flags in cached)
    assert type(exact(_Text("x"))) is str and type(exact(b"")) is bytes


def test_call_state_is_forgotten() -> None:
    import datetime

    template = _Text(r"\1\1")
    assert re.compile("(a)").sub(template, "a") == "aa"
    datetime.datetime.strptime("2021", _Text("%Y"))
    forget_call_state()
    import _strptime  # type: ignore[import-not-found]

    assert all(type(key) is str for key in _strptime._regex_cache)
    assert re._compile_repl.cache_info().currsize == 0  # type: ignore[attr-defined]
