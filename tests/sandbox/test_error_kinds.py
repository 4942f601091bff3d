"""Each error kind of docs/parsers.md, through the real service; kinds, never message text."""

from __future__ import annotations

import pytest
from preservarium.sandbox_client import CommandInput, SandboxClient

from tests.sandbox.conftest import contact
from tests.sandbox.support import outcome

CASES = {
    "compile_error": "def parse(payload, metadata):\n    return payload.__class__\n",
    "missing_function": "def decode(payload, metadata):\n    return {}\n",
    "import_denied": "import socket\ndef parse(payload, metadata):\n    return {}\n",
    "runtime_error": "def parse(payload, metadata):\n    x = 1\n    return {'v': payload[5]}\n",
    "timeout": "def parse(payload, metadata):\n    while True:\n        pass\n",
    "memory_limit": "def parse(payload, metadata):\n    return {'x': len(bytes(2 ** 34))}\n",
    "invalid_output": "def parse(payload, metadata):\n    return {'x': float('nan')}\n",
}


@pytest.mark.parametrize("kind", sorted(CASES))
async def test_error_kind(client: SandboxClient, kind: str) -> None:
    response = await client.test_parser(CASES[kind], contact=contact("test"))
    assert outcome(response)[0] == kind


async def test_runtime_error_names_the_parser_line(client: SandboxClient) -> None:
    trial = await client.test_parser(CASES["runtime_error"], contact=contact("test"))
    assert trial.answer.error is not None and trial.answer.error.line == 3


async def test_compile_error_names_the_line(client: SandboxClient) -> None:
    source = "def parse(payload, metadata):\n    return {\n"
    trial = await client.test_parser(source, contact=contact("test"))
    assert outcome(trial)[0] == "compile_error"
    assert trial.answer.error is not None and trial.answer.error.line == 2


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ("return {1: 'int key'}", "invalid_output"),
        ("return {'x': {'y': [1, (2, {'z': None})]}, 'b': True, 'f': 1.5}", "ok"),
        ("return {'big': 2 ** 70}", "invalid_output"),
        ("return {'b': b'bytes'}", "invalid_output"),
        ("return [1]", "invalid_output"),
        ("d = {}\n    for i in range(40):\n        d = {'d': d}\n    return d", "invalid_output"),
        ("return {'s': 'x' * 300000}", "invalid_output"),
    ],
)
async def test_outputs_are_checked_by_exact_type(
    client: SandboxClient, body: str, kind: str
) -> None:
    source = f"def parse(payload, metadata):\n    {body}\n"
    assert outcome(await client.test_parser(source, contact=contact("test")))[0] == kind


async def test_identify_reply_and_format_command(client: SandboxClient) -> None:
    source = (
        "def identify(payload, metadata):\n    return 'sn-' + payload.hex()\n"
        "def parse(payload, metadata):\n"
        "    warn('low battery')\n"
        "    return {'id': metadata['device_id'], 'path': metadata['path']}\n"
        "def reply(payload, metadata):\n    return bytes([1, 2])\n"
        "def format_command(command):\n"
        "    return bytes([command['params']['n'], len(command['command'])])\n"
    )
    response = await client.test_parser(
        source,
        contact=contact("test", b"\xab", device_id=None, path="m"),
        identify=True,
        command=CommandInput("r1", "sn-ab", "reboot", '{"n": 9}'),
    )
    assert outcome(response) == ("ok", {"id": "sn-ab", "path": "m"})
    answer = response.answer
    assert answer.device_id == "sn-ab"
    assert answer.reply == b"\x01\x02"
    assert answer.warnings == ("low battery",)
    assert answer.command is not None and answer.command.payload == b"\x09\x06"


@pytest.mark.parametrize(
    ("function", "kind"),
    [
        ("def format_command(command):\n    return 'AT+REBOOT'\n", "invalid_output"),
        ("def format_command(command):\n    return bytes(2000)\n", "invalid_output"),
        (
            "def format_command(command):\n    raise ValueError('no such command')\n",
            "runtime_error",
        ),
        ("", "missing_function"),
    ],
)
async def test_command_failures_are_kept_apart_from_the_parse(
    client: SandboxClient, function: str, kind: str
) -> None:
    source = "def parse(payload, metadata):\n    return {}\n" + function
    response = await client.test_parser(
        source, contact=contact("test"), command=CommandInput("r", "d", "x")
    )
    assert outcome(response)[0] == "ok"
    command = response.answer.command
    assert command is not None and command.error is not None
    assert command.error.kind == kind


async def test_route_parser_without_identify_is_missing_function(client: SandboxClient) -> None:
    source = "def parse(payload, metadata):\n    return {}\n"
    response = await client.test_parser(source, contact=contact("test"), identify=True)
    assert outcome(response)[0] == "missing_function"


async def test_unknown_device_type_is_parser_not_found(client: SandboxClient) -> None:
    response = await client.parse(contact("no-such-type"))
    assert outcome(response)[0] == "parser_not_found"


TOKEN_PARSER = (
    "def identify(payload, metadata):\n    return 'sn-' + payload[:2].hex()\n"
    "def token(payload, metadata):\n{body}"
    "def parse(payload, metadata):\n    return {{'keys': sorted(metadata)}}\n"
)


@pytest.mark.parametrize(
    ("body", "kind", "token"),
    [
        ("    return payload[2:].decode()\n", "ok", "secret-token"),
        ("    return None\n", "ok", None),
        ("    return payload[2:]\n", "invalid_output", None),  # bytes, not str
        ("    return ''\n", "invalid_output", None),
        ("    return 'x' * 257\n", "invalid_output", None),
        ("    raise ValueError('no token field')\n", "runtime_error", None),
    ],
)
async def test_token_finds_the_credential_in_the_payload(
    client: SandboxClient, body: str, kind: str, token: str | None
) -> None:
    response = await client.test_parser(
        TOKEN_PARSER.format(body=body),
        contact=contact("test", b"\xab\xcdsecret-token", device_id=None, path="m"),
        identify=True,
    )
    assert outcome(response)[0] == kind
    if kind == "ok":
        assert response.answer.device_id == "sn-abcd"
        assert response.answer.token == token


async def test_token_runs_only_where_identify_does(client: SandboxClient) -> None:
    # A /d/{id} contact is authenticated by the gateway before the parse: no token() call.
    source = TOKEN_PARSER.format(body="    return 'never'\n")
    response = await client.test_parser(source, contact=contact("test", b"\xab\xcd"))
    assert outcome(response)[0] == "ok" and response.answer.token is None
