"""Parser context through the real sandbox: attributes and the uplink id reach every
entry point that is given them, each call gets its own copy, and examples can set them."""

from __future__ import annotations

import asyncio
import json
import uuid

from preservarium.attributes import encode_attributes
from preservarium.contract.contact import Contact
from preservarium.examples import load_examples, run_examples
from preservarium.repositories import SQLParserRepository
from preservarium.sandbox_client import CommandInput, SandboxClient

from tests.support.contacts import unix

SOURCE = """
import json

def identify(payload, metadata):
    metadata["attributes"]["seen_by"] = "identify"  # must not reach the next entry point
    return metadata["attributes"]["serial"] + "-" + metadata["uplink_id"][:4]

def token(payload, metadata):
    if "seen_by" in metadata["attributes"]:
        raise ValueError("identify's change leaked")
    return None

def parse(payload, metadata):
    return {"attributes": metadata["attributes"], "uplink_id": metadata["uplink_id"],
            "keys": sorted(metadata)}

def reply(payload, metadata):
    return json.dumps(metadata["attributes"], sort_keys=True).encode()

def format_command(command):
    return json.dumps([command["attributes"], sorted(command)], sort_keys=True).encode()
"""
ATTRIBUTES = {"serial": "abc", "calibration": {"offset": -0.5, "points": [1, 2]}}
UPLINK_ID = "0123456789abcdef0123456789abcdef"


def contact(**values: object) -> Contact:
    return Contact(
        payload=b"\x01", device_type="ctx", path="m", received_at=unix(1_700_000_000),
        attributes_json=encode_attributes(ATTRIBUTES), id=UPLINK_ID, **values,  # type: ignore[arg-type]
    )  # fmt: skip


async def test_identify_parse_and_reply_get_the_attributes_and_the_uplink_id(
    client: SandboxClient,
) -> None:
    result = (await client.test_parser(SOURCE, contact=contact(), identify=True)).answer
    assert result.error is None, result.error
    assert result.device_id == "abc-0123"
    data = json.loads(result.data_json)
    assert data["attributes"] == ATTRIBUTES and data["uplink_id"] == UPLINK_ID
    assert data["keys"] == sorted(
        ["device_id", "device_type", "path", "method", "confirmable", "received_at", "query",
         "attributes", "uplink_id"]
    )  # fmt: skip
    assert result.reply is not None and json.loads(result.reply) == ATTRIBUTES


async def test_without_context_attributes_are_empty_and_the_uplink_id_none(
    client: SandboxClient,
) -> None:
    plain = Contact(payload=b"\x01", device_type="ctx", device_id="d1", path="m")
    response = await client.test_parser(SOURCE, contact=plain)
    data = json.loads(response.answer.data_json)
    assert (data["attributes"], data["uplink_id"]) == ({}, None)


async def test_format_command_gets_the_attributes(client: SandboxClient) -> None:
    command = CommandInput(
        request_id="r1", device_id="d1", command="set", params_json='{"a": 1}',
        attributes_json=encode_attributes({"site": "north"}),
    )  # fmt: skip
    formatted = (await client.test_parser(SOURCE, command=command)).answer.command
    assert formatted is not None and formatted.payload is not None
    attributes, keys = json.loads(formatted.payload)
    assert attributes == {"site": "north"}
    assert keys == ["attributes", "command", "device_id", "params", "request_id"]
    bare = CommandInput(request_id="r2", device_id="d1", command="set")
    formatted = (await client.test_parser(SOURCE, command=bare)).answer.command
    assert formatted is not None and formatted.payload is not None
    assert json.loads(formatted.payload)[0] == {}


async def test_examples_set_attributes_for_a_device_and_a_command(client: SandboxClient) -> None:
    keys = sorted(["device_id", "device_type", "path", "method", "confirmable", "received_at",
                   "query", "attributes", "uplink_id"])  # fmt: skip
    reply = json.dumps({"site": "north"}).encode().hex()
    command_keys = ["attributes", "command", "device_id", "params", "request_id"]
    command_bytes = json.dumps([{"site": "south"}, command_keys]).encode().hex()
    examples = load_examples(
        f"""
- description: attributes of a registered device
  input: {{device_id: d1, path: m, payload_hex: "01", attributes: {{site: north}}}}
  output:
    data: {{attributes: {{site: north}}, uplink_id: null, keys: {json.dumps(keys)}}}
    reply_hex: "{reply}"
- description: attributes of a command's device
  command: {{command: set, attributes: {{site: south}}}}
  output_hex: "{command_bytes}"
"""
    )
    results = await run_examples(client, SOURCE, examples, "ctx")
    assert [result.mismatch for result in results] == [None, None]


STRICT = """
def identify(payload, metadata):
    return "dev-" + payload.hex()

def token(payload, metadata):
    return "tok-" + payload.hex()

def parse(payload, metadata):
    return {"offset": metadata["attributes"]["offset"]}
"""


async def test_a_failure_after_identify_says_which_device_and_token_it_named(
    client: SandboxClient, parsers: SQLParserRepository
) -> None:
    device_type = f"t{uuid.uuid4().hex[:10]}"
    await parsers.upload(device_type, STRICT)
    route = Contact(payload=b"\x0a\x0b", device_type=device_type, path="m")
    for _ in range(100):  # until the sandbox's catalog has the version
        response = await client.parse(route, identify=True)
        if response.error is None or response.error.kind != "parser_not_found":
            break
        await asyncio.sleep(0.05)
    assert response.error is not None and "KeyError" in response.error.message
    assert (response.identified_device_id, response.identified_token) == ("dev-0a0b", "tok-0a0b")
    again = Contact(
        payload=b"\x0a\x0b", device_type=device_type, path="m", device_id="dev-0a0b",
        attributes_json=encode_attributes({"offset": 2}),
    )  # fmt: skip
    answered = await client.parse(again)
    assert json.loads(answered.data_json) == {"offset": 2}
    # A registered device's failure (no identify()) names nothing more than the contact did.
    failed = await client.parse(Contact(payload=b"", device_type=device_type, device_id="d"))
    assert failed.error is not None and failed.identified_device_id is None
