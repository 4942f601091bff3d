"""Parse with a stored version asked for by number: replays and checks before activating."""

from __future__ import annotations

import uuid

from preservarium.repositories import SQLParserRepository
from preservarium.sandbox_client import SandboxClient
from preservarium_sandbox.server import SandboxServer

from tests.sandbox.conftest import contact, wait_for_version
from tests.sandbox.support import outcome

ECHO = "def parse(payload, metadata):\n    return {'v': VERSION}\nVERSION = 1\n"


def new_type() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


async def test_a_version_that_is_not_active_answers_when_asked_for(
    client: SandboxClient, parsers: SQLParserRepository
) -> None:
    device_type = new_type()
    await parsers.upload(device_type, ECHO)
    await parsers.upload(device_type, ECHO.replace("= 1", "= 2"), activate=False)
    await wait_for_version(client, device_type, 1)
    pinned = await client.parse(contact(device_type), version=2)
    assert outcome(pinned) == ("ok", {"v": 2})
    assert pinned.parser.version == 2
    active = await client.parse(contact(device_type))
    assert (outcome(active), active.parser.version) == (("ok", {"v": 1}), 1)
    assert outcome(await client.parse(contact(device_type), version=1)) == ("ok", {"v": 1})


async def test_the_version_asked_for_works_on_the_stream(
    sandbox: SandboxServer, parsers: SQLParserRepository
) -> None:
    device_type = new_type()
    await parsers.upload(device_type, ECHO)
    await parsers.upload(device_type, ECHO.replace("= 1", "= 2"), activate=False)
    async with SandboxClient(sandbox.config.listen, timeout_s=10, streams=1) as streaming:
        answer = await streaming.parse(contact(device_type), version=2)
    assert outcome(answer) == ("ok", {"v": 2})


async def test_an_unknown_version_is_parser_not_found(
    client: SandboxClient, parsers: SQLParserRepository
) -> None:
    device_type = new_type()
    await parsers.upload(device_type, ECHO)
    response = await client.parse(contact(device_type), version=7)
    assert response.error is not None and response.error.kind == "parser_not_found"
    unknown = await client.parse(contact(new_type()), version=1)
    assert unknown.error is not None and unknown.error.kind == "parser_not_found"
