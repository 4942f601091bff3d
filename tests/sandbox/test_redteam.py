"""Attacks found in review that are not in tests/data/attacks, through the real service."""

from __future__ import annotations

import os
import time

import pytest
from preservarium.sandbox_client import SandboxClient
from preservarium_sandbox.server import SandboxServer

from tests.sandbox.conftest import contact
from tests.sandbox.support import outcome

BENIGN = "def parse(payload, metadata):\n    return {'n': len(payload)}\n"

FINALIZER_BOMB = """
def g(box):
    try:
        yield 1
    finally:
        while True:
            try:
                while True:
                    pass
            except:
                pass

def parse(payload, metadata):
    keep = []
    for i in range(50):
        box = []
        x = g(box)
        box.append(x)
        next(x)
        keep.append(x)
        junk = [[j] for j in range(100)]
    return {"a": 1}
"""


@pytest.mark.serial
async def test_a_parsers_leftovers_never_run_on_another_parsers_time(
    client: SandboxClient, sandbox: SandboxServer
) -> None:
    for _ in range(3):
        response = await client.test_parser(FINALIZER_BOMB, contact=contact("test"))
        assert outcome(response)[0] in {"ok", "timeout"}
    for n in range(12):  # every worker, several times over
        started = time.perf_counter()
        response = await client.test_parser(BENIGN + f"# {n}\n", contact=contact("test", b"ab"))
        assert outcome(response) == ("ok", {"n": 2})
        assert time.perf_counter() - started < 1.0


async def test_unencodable_text_is_answered_not_crashed(
    client: SandboxClient, sandbox: SandboxServer
) -> None:
    before = set(sandbox.trials.pool.pids)
    raising = "def parse(payload, metadata):\n    raise ValueError(chr(0xd800))\n"
    kind, error = outcome(await client.test_parser(raising, contact=contact("test")))
    assert kind == "runtime_error" and "ValueError" in error.message
    warning = "def parse(payload, metadata):\n    warn(chr(0xd800))\n    return {}\n"
    response = await client.test_parser(warning, contact=contact("test"))
    assert outcome(response) == ("ok", {}) and response.answer.warnings == ("?",)
    reaching = "def parse(payload, metadata):\n    warn.items.append(b'')\n    return {}\n"
    assert outcome(await client.test_parser(reaching, contact=contact("test")))[0] == (
        "runtime_error"
    )
    assert set(sandbox.trials.pool.pids) == before  # no worker died for any of it


async def test_workers_cannot_write_to_the_services_stderr(sandbox: SandboxServer) -> None:
    for pid in sandbox.pool.pids + sandbox.trials.pool.pids:
        assert os.readlink(f"/proc/{pid}/fd/2") == "/dev/null"


async def test_datetime_now_works_without_opening_imports(client: SandboxClient) -> None:
    source = (
        "import datetime\n"
        "def parse(payload, metadata):\n"
        "    now = datetime.datetime.now(datetime.timezone.utc)\n"
        "    return {'year': now.year}\n"
    )
    kind, data = outcome(await client.test_parser(source, contact=contact("test")))
    assert kind == "ok" and data["year"] >= 2026
    refused = "import time\ndef parse(payload, metadata):\n    return {}\n"
    assert outcome(await client.test_parser(refused, contact=contact("test")))[0] == (
        "import_denied"
    )


@pytest.mark.serial  # the worker answers within its 50 ms kill margin, or is replaced
async def test_a_plain_timeout_keeps_its_worker_and_a_swallowed_one_replaces_it(
    client: SandboxClient, sandbox: SandboxServer
) -> None:
    loop = "def parse(payload, metadata):\n    while True:\n        pass\n"
    await client.test_parser(loop, contact=contact("test"))  # compiled on some worker
    before = set(sandbox.trials.pool.pids)
    for n in range(4):  # each a new source: a remembered failure would not run at all
        variant = f"{loop}# {n}\n"
        assert outcome(await client.test_parser(variant, contact=contact("test")))[0] == "timeout"
    assert set(sandbox.trials.pool.pids) == before  # cleaned up in place, no process start
    swallow = (
        "def parse(payload, metadata):\n    while True:\n        try:\n"
        "            while True:\n                pass\n        except:\n            pass\n"
    )
    assert outcome(await client.test_parser(swallow, contact=contact("test")))[0] == "timeout"
    assert set(sandbox.trials.pool.pids) != before  # killed and replaced
