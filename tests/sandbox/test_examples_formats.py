"""Examples in The Things Stack's device repository codec format run as our own, through
the real sandbox: uplinkDecoder examples as uplink cases, downlinkEncoder examples as
command cases, `errors` as an expected failure whose message says each of them."""

from __future__ import annotations

import json

import pytest
from preservarium.examples import (
    ANY_ERROR,
    CommandExample,
    ExamplesError,
    UplinkExample,
    load_examples,
    run_examples,
)
from preservarium.sandbox_client import SandboxClient

SOURCE = """
def parse(payload, metadata):
    if len(payload) < 2:
        raise ValueError('too short for a reading')
    warn('checked') if payload[0] == 9 else None
    return {'temperature': (payload[0] * 256 + payload[1]) / 10, 'at': metadata['received_at']}

def format_command(command):
    if command['command'] == 'set_period':
        seconds = command['params']['seconds']
        return bytes([80, seconds // 256, seconds % 256])
    if command['command'] == 'downlink':
        return bytes([1 if command['params'].get('led') == 'green' else 0])
    raise ValueError('unknown command ' + command['command'])
"""

CODEC = """
uplinkDecoder:
  fileName: codec.js
  examples:
    - description: a reading
      input: {fPort: 1, bytes: [0x00, 0xD7], recvTime: "2026-11-30T12:00:00Z"}
      output:
        data: {temperature: 21.5, at: 1796040000}
        warnings: []
        errors: []
        normalizedOutput: {data: [{air: {temperature: 21.5}}]}
    - description: too short
      input: {fPort: 1, bytes: [1]}
      output: {errors: [too short]}
downlinkEncoder:
  fileName: codec.js
  examples:
    - description: a named command
      input: {data: {command: set_period, params: {seconds: 900}}}
      output: {bytes: [80, 3, 132], fPort: 1, warnings: [], errors: []}
    - description: data without a command name
      input: {data: {led: green}}
      output: {bytes: [1], fPort: 2}
    - description: an unknown command
      input: {data: {command: reboot}}
      output: {errors: [unknown command reboot]}
downlinkDecoder:
  fileName: codec.js
  examples:
    - description: not run
      input: {fPort: 2, bytes: [1]}
      output: {data: {led: green}}
"""


def test_a_codec_file_reads_as_uplink_and_command_cases() -> None:
    examples = load_examples(CODEC)
    assert [type(e) for e in examples] == [UplinkExample] * 2 + [CommandExample] * 3
    reading, short, named, unnamed, unknown = examples
    assert isinstance(named, CommandExample) and named.output == bytes([80, 3, 132])
    assert isinstance(unknown, CommandExample) and unknown.error_texts == (
        "unknown command reboot",
    )
    assert isinstance(reading, UplinkExample) and reading.sent.payload == b"\x00\xd7"
    assert reading.sent.device_id == "test-device" and reading.received_at == 1796040000
    assert isinstance(short, UplinkExample) and short.error == ANY_ERROR
    assert isinstance(unnamed, CommandExample)
    assert (unnamed.command.command, json.loads(unnamed.command.params_json)) == (
        "downlink",
        {"led": "green"},
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("uplinkDecoder: {examples: [{description: x, input: {bytes: [256]}}]}",
         "uplinkDecoder example 1 ('x'): input.bytes must be a list of integers 0 to 255"),
        ("uplinkDecoder: {examples: [{description: x, input: {bytes: [], port: 1}}]}",
         "input has unknown key 'port'"),
        ("downlinkEncoder: {examples: [{description: x, input: {data: {}}, output: {}}]}",
         "output needs bytes, or errors the call must fail with"),
        ("downlinkEncoder: {examples: [{description: x, input: {data: {}},"
         " output: {bytes: [], warnings: [w]}}]}", "format_command() has none"),
        ("uplinkDecoder: {examples: []}\nvendor: acme", "unknown key 'vendor'"),
        ("uplinkDecoder: {examples: [{description: x, input: {bytes: [],"
         " recvTime: '2026-11-30T12:00:00'}}]}", "needs a time zone"),
    ],
)  # fmt: skip
def test_a_malformed_codec_file_is_refused_naming_the_example(text: str, problem: str) -> None:
    with pytest.raises(ExamplesError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        load_examples(text)


async def test_codec_examples_run_through_the_sandbox(client: SandboxClient) -> None:
    results = await run_examples(client, SOURCE, load_examples(CODEC), "thermo")
    assert [(r.description, r.mismatches) for r in results] == [
        (r.description, ()) for r in results
    ]
    assert len(results) == 5


async def test_codec_examples_that_do_not_hold_say_why(client: SandboxClient) -> None:
    wrong = CODEC.replace("temperature: 21.5, at", "temperature: 22.5, at").replace(
        "[unknown command reboot]", "[no such command]"
    )
    results = await run_examples(client, SOURCE, load_examples(wrong), "thermo")
    failing = {r.description: r.mismatches for r in results if not r.ok}
    assert set(failing) == {"a reading", "an unknown command"}
    assert failing["a reading"] == ("data.temperature: expected 22.5, got 21.5",)
    assert failing["an unknown command"][0].startswith(
        'expected the error to say "no such command"'
    )
