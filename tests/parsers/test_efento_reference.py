"""The Efento parser's downlinks and configuration reports against an independent
encoder: Efento's own .proto files compiled by grpc_tools.protoc and the real protobuf
library (tests/parsers/efento_reference.py). The parser itself runs in the real sandbox."""

from __future__ import annotations

import json
import re
from typing import Any

from preservarium.contract.contact import Contact
from preservarium.sandbox_client import SandboxClient

from tests.parsers.efento_reference import config_bytes, config_message, modules
from tests.parsers.support import RECEIVED_AT, data_of, examples, ok, run_command, source
from tests.support.contacts import unix

SOURCE = source("efento")
EXAMPLES = examples("efento")
SERIAL = bytes.fromhex("282c02000001")
COMMANDS = {
    "request_device_info": {"device_info_request": True},
    "request_configuration": {"configuration_request": True},
}


def settable() -> set[str]:
    """The set_config parameters the parser knows (its SETTABLE table)."""
    start = SOURCE.index("\nSETTABLE = {")
    table = SOURCE[start : SOURCE.index("\n}\n", start)]
    names = set(re.findall(r'^    "([a-z_]+)": \(', table, re.M))
    assert len(names) > 40, "the SETTABLE table was not found"
    return names


def command_examples() -> list[dict[str, Any]]:
    return [e for e in EXAMPLES if "command" in e and "output_hex" in e]


def test_every_command_example_is_what_protobuf_encodes() -> None:
    checked = 0
    for example in command_examples():
        command = example["command"]
        params = command.get("params", {})
        if command["command"] != "set_config":
            assert not params
            params = COMMANDS[command["command"]]
        expected = config_bytes(params)
        assert expected.hex() == example["output_hex"], example["description"]
        checked += 1
    assert checked >= 20


def test_every_setting_has_an_example_and_is_a_protoconfig_field() -> None:
    fields = set(modules()["proto_config"].ProtoConfig.DESCRIPTOR.fields_by_name)
    names = settable()
    assert names <= fields, sorted(names - fields)
    shown = set().union(*(e["command"].get("params", {}) for e in command_examples()))
    assert shown >= names, sorted(names - shown)
    operator_settings = {
        "measurement_period_base", "measurement_period_factor", "transmission_interval",
        "ack_interval", "supervision_period", "device_info_request", "configuration_request",
        "current_time", "data_server_ip", "data_server_port", "data_endpoint",
        "configuration_endpoint", "device_info_endpoint", "time_endpoint", "apn",
        "plmn_selection", "cloud_token", "cloud_token_config", "rules",
    }  # fmt: skip
    assert operator_settings <= names


async def test_every_setting_at_once_encodes_as_protobuf_does(client: SandboxClient) -> None:
    params: dict[str, Any] = {}
    for example in command_examples():
        params.update(example["command"].get("params", {}))
    params.pop("current_time")
    params["rules"] = params["rules"][:3]
    expected = config_bytes(params)
    assert len(expected) <= 1024  # format_command's output limit
    assert await run_command(client, SOURCE, "set_config", params) == ("ok", expected)


async def test_false_requests_are_left_out_as_protobuf_leaves_them(
    client: SandboxClient,
) -> None:
    params = {"configuration_request": False, "device_info_request": True}
    assert config_bytes(params) == bytes.fromhex("3001")
    assert await run_command(client, SOURCE, "set_config", params) == ("ok", b"\x30\x01")


async def test_a_configuration_report_made_by_protobuf_parses_field_by_field(
    client: SandboxClient,
) -> None:
    report = {
        "serial_number": SERIAL, "payload_split_info": -3, "configuration_hash": 41,
        "configuration_hash_timestamp": 1_749_000_000, "configuration_errors": [1, 2],
        "configuration_error_timestamp": 1_749_000_100, "measurement_period_base": 60,
        "measurement_period_factor": 15, "transmission_interval": 900,
        "ack_interval": 0xFFFFFFFF, "supervision_period": 86_400, "data_server_ip": "10.0.0.1",
        "data_server_port": 5683, "apn": "\x7f", "plmn_selection": 1_000_000,
        "cloud_token_config": 2, "data_endpoint": "m", "time_endpoint": "t",
        "dns_server_ip": [255, 255, 255, 255], "channel_types": [1, 2, 0],
        "rules": [{"channels": [1, 2], "condition": "diff_threshold",
                   "parameters": [-5, 1, 2, 1], "action": "trigger_transmission"}],
    }  # fmt: skip
    payload = bytes(config_message(report).SerializeToString())
    contact = Contact(
        payload=payload, device_type="efento", path="c", received_at=unix(RECEIVED_AT)
    )
    response = await client.test_parser(SOURCE, contact=contact, identify=True)
    assert ok(response).device_id == SERIAL.hex()
    data = data_of(response)
    assert data["part"] == {"index": 3, "count": None, "last": False}
    assert data["rules"] == [
        {"channels": [1, 2], "condition": "diff_threshold", "parameters": [-5, 1, 2, 1],
         "action": "trigger_transmission"},
    ]  # fmt: skip
    assert data["channel_types"] == ["temperature", "humidity", "no_sensor"]
    for name in ("serial_number", "payload_split_info", "rules", "channel_types"):
        report.pop(name)
    assert {name: data[name] for name in report} == report, json.dumps(data)
