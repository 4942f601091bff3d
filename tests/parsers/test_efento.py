"""examples/parsers/efento.py, run in the real sandbox service."""

from __future__ import annotations

import re
from typing import Any

import pytest
from preservarium import protowire
from preservarium.contract.contact import Contact
from preservarium.sandbox_client import SandboxClient

from tests.conftest import DATA
from tests.parsers.support import (
    RECEIVED_AT,
    check_example,
    check_with_sdk_runner,
    data_of,
    examples,
    failure,
    ok,
    run_command,
    source,
)
from tests.support.contacts import unix

SOURCE = source("efento")
EXAMPLES = examples("efento")
SERIAL = bytes.fromhex("282c02000001")
TS = 1_700_000_000


def route(path: str, payload: bytes, **kw: Any) -> Contact:
    """A contact on an Efento route: no device id, identify() names the device."""
    values: dict[str, Any] = {"received_at": unix(RECEIVED_AT)}
    values.update(kw)
    return Contact(payload=payload, device_type="efento", path=path, **values)


def channel(
    type_number: int,
    offsets: list[int],
    *,
    start: int | None = None,
    ts: int = TS,
    packed: bool = True,
) -> bytes:
    """One ProtoChannel: type 1, timestamp 2, start_point 4, sample_offsets 5."""
    fields: list[tuple[int, str, object]] = [(1, "varint", type_number), (2, "varint", ts)]
    if start is not None:
        fields.append((4, "sint", start))
    if packed:
        fields.append((5, "packed_sint", offsets))
    else:
        fields.extend((5, "sint", offset) for offset in offsets)
    return protowire.encode(fields)


def measurements(
    *channels: bytes,
    base: int = 60,
    factor: int | None = None,
    extra: list[tuple[int, str, object]] | None = None,
) -> bytes:
    """A ProtoMeasurements message of serial 282c02000001 with `channels` in order."""
    fields: list[tuple[int, str, object]] = [(1, "bytes", SERIAL), (2, "bool", True)]
    fields.append((3, "varint", base))
    fields.extend((4, "message", body) for body in channels)
    if factor is not None:
        fields.append((8, "varint", factor))
    fields.extend(extra or [])
    return protowire.encode(fields)


async def parse_m(client: SandboxClient, payload: bytes) -> Any:
    response = await client.test_parser(SOURCE, contact=route("m", payload), identify=True)
    assert ok(response).device_id == "282c02000001"
    return data_of(response)


def sample(ch: int, type_name: str, ts: int, value: Any, **extra: Any) -> dict[str, Any]:
    return {"channel": ch, "type": type_name, "timestamp": ts, "value": value, **extra}


# --- the device note's vectors, as the examples file holds them ---------------------------


@pytest.mark.parametrize("example", EXAMPLES, ids=[e["description"][:40] for e in EXAMPLES])
async def test_example(client: SandboxClient, example: dict[str, Any]) -> None:
    await check_example(client, SOURCE, "efento", example)


async def test_examples_pass_the_sdk_runner(client: SandboxClient) -> None:
    assert await check_with_sdk_runner(client, "efento", "efento") == len(EXAMPLES)


def test_every_vector_of_the_device_note_is_an_example() -> None:
    note = (DATA / "devices" / "efento.md").read_text(encoding="utf-8")
    vectors = re.findall(r"^\| (\w+) \| [^|]+ \| `([0-9a-f]+)` \|", note, re.MULTILINE)
    assert {name for name, _ in vectors} >= {"S1", "S2", "S3", "S4", "S5", "S6", "D1", "D3", "T1"}
    for name, hex_value in vectors:
        matching = [e for e in EXAMPLES if e["description"].startswith(f"{name} ")]
        assert matching, f"vector {name} of the device note has no example"
        example = matching[0]
        if "command" in example:
            assert example["output_hex"] == hex_value, name
        elif example["input"]["path"] == "t":
            assert example["output"]["reply_hex"] == hex_value, name
        else:
            assert example["input"]["payload_hex"] == hex_value, name


# --- round trips: payloads built with protowire, one per measurement class --------------


async def test_continuous_values_are_scaled_and_error_codes_kept(client: SandboxClient) -> None:
    payload = measurements(
        channel(1, [0, 5, 8355840, 8388607, -10], start=215),  # temperature, 0.1 degC
        channel(27, [0, 1], start=455),  # humidity_accurate, 0.1 %
        channel(14, [0], start=1234),  # h2s_gas, 0.01 ppm
        channel(41, [0], start=-1500),  # current_precise, 0.001 mA
        channel(4, [0, -3], start=-20),  # differential_pressure, 1 Pa
        base=120,
        factor=2,
    )
    data = await parse_m(client, payload)
    assert data["measurement_period"] == 240
    assert data["measurements"] == [
        sample(1, "temperature", TS, 21.5),
        sample(1, "temperature", TS + 240, 22.0),
        {"channel": 1, "type": "temperature", "timestamp": TS + 480, "error_code": 8355840},
        {"channel": 1, "type": "temperature", "timestamp": TS + 720, "error_code": 8388607},
        sample(1, "temperature", TS + 960, 20.5),
        sample(2, "humidity_accurate", TS, 45.5),
        sample(2, "humidity_accurate", TS + 240, 45.6),
        sample(3, "h2s_gas", TS, 12.34),
        sample(4, "current_precise", TS, -1.5),
        sample(5, "differential_pressure", TS, -20),
        sample(5, "differential_pressure", TS + 240, -23),
    ]


async def test_air_quality_types_are_divided_by_three(client: SandboxClient) -> None:
    payload = measurements(
        channel(26, [0, 3], start=1202),  # co2_gas: 400 ppm, calibration 2; then 401, 2
        channel(6, [0], start=301),  # iaq 100, calibration 1
        channel(28, [8355841], start=30),  # static_iaq: a sensor error, not divided
    )
    data = await parse_m(client, payload)
    assert data["measurements"] == [
        sample(1, "co2_gas", TS, 400, calibration_status=2),
        sample(1, "co2_gas", TS + 60, 401, calibration_status=2),
        sample(2, "iaq", TS, 100, calibration_status=1),
        {"channel": 3, "type": "static_iaq", "timestamp": TS, "error_code": 8355841},
    ]


async def test_meter_pairs_give_values_and_totals(client: SandboxClient) -> None:
    payload = measurements(
        channel(38, [0, 4], start=12 * 4 + 1),  # elec major: 12 kWh (status 1), then 13
        channel(37, [0, -6 * 300], start=345 * 6 + 0),  # elec minor -> index 0 = channel 1
        channel(40, [0], start=7 * 4),  # pulse_cnt_acc_wide_major: 7 Mpulses
        channel(39, [0], start=123456 * 6 + 2),  # wide minor -> index 2 = channel 3
        base=900,
        factor=1,
    )
    data = await parse_m(client, payload)
    assert data["measurements"] == [
        sample(1, "elec_meter_acc_major", TS, 12, meter_status=1),
        sample(1, "elec_meter_acc_major", TS + 900, 13, meter_status=1),
        sample(2, "elec_meter_acc_minor", TS, 345, major_channel=1),
        sample(2, "elec_meter_acc_minor", TS + 900, 45, major_channel=1),
        sample(3, "pulse_cnt_acc_wide_major", TS, 7, meter_status=0),
        sample(4, "pulse_cnt_acc_wide_minor", TS, 123456, major_channel=3),
    ]
    total = {"type": "elec_meter_acc", "channel": 1, "minor_channel": 2, "unit": "Wh"}
    wide = {"type": "pulse_cnt_acc_wide", "channel": 3, "minor_channel": 4, "unit": "pulses"}
    assert data["meter_totals"] == [
        {**total, "timestamp": TS, "value": 12345},
        {**total, "timestamp": TS + 900, "value": 13045},
        {**wide, "timestamp": TS, "value": 7123456},
    ]


async def test_binary_offsets_are_state_changes(client: SandboxClient) -> None:
    payload = measurements(
        channel(7, [1, -61, 121]),  # flooding: water, dry 60 s later, water again
        channel(42, [-1, 3601]),  # output_control: off, then on an hour later
        base=60,
        factor=1,
    )
    data = await parse_m(client, payload)
    assert data["measurements"] == [
        sample(1, "flooding", TS, True),
        sample(1, "flooding", TS + 60, False),
        sample(1, "flooding", TS + 120, True),
        sample(2, "output_control", TS, False),
        sample(2, "output_control", TS + 3600, True),
    ]


async def test_period_factor_zero_means_one_or_fourteen_with_binary_channels(
    client: SandboxClient,
) -> None:
    continuous_only = await parse_m(client, measurements(channel(2, [0, 1], start=40), base=300))
    assert continuous_only["measurement_period_factor"] == 1
    assert [m["timestamp"] for m in continuous_only["measurements"]] == [TS, TS + 300]

    mixed = await parse_m(
        client, measurements(channel(2, [0, 1], start=40), channel(5, [1]), base=300, factor=0)
    )
    assert mixed["measurement_period_factor"] == 14
    assert mixed["measurement_period"] == 4200
    assert [m["timestamp"] for m in mixed["measurements"]] == [TS, TS + 4200, TS]


async def test_unpacked_offsets_decode_like_packed_ones(client: SandboxClient) -> None:
    packed = await parse_m(client, measurements(channel(1, [0, 1, -2], start=200)))
    unpacked = await parse_m(client, measurements(channel(1, [0, 1, -2], start=200, packed=False)))
    assert packed == unpacked
    assert [m["value"] for m in packed["measurements"]] == [20.0, 20.1, 19.8]


async def test_empty_and_unknown_channels_keep_channel_numbers(client: SandboxClient) -> None:
    payload = measurements(
        protowire.encode([]),  # channel 1: no sensor
        channel(99, [1, 2], start=0),  # channel 2: a type this parser does not know
        channel(3, [0], start=10132),  # channel 3: atmospheric pressure
    )
    response = await client.test_parser(SOURCE, contact=route("m", payload), identify=True)
    data = data_of(response)
    assert data["measurements"] == [sample(3, "atmospheric_pressure", TS, 1013.2)]
    assert any("unknown measurement type 99" in w for w in ok(response).warnings)


async def test_status_fields(client: SandboxClient) -> None:
    reason = 1 << 1 | 5 << 3 | 1 << 10 | 1 << 19 | 1 << 22 | 1 << 23
    payload = measurements(
        extra=[
            (5, "varint", TS + 900),
            (6, "varint", reason),
            (9, "varint", 4242),
            (16, "string", "token-1"),
            (17, "varint", 99),
            (18, "varint", 65526),  # no voltage measurement, battery powered
            (77, "string", "a field of a future firmware"),
        ]
    )
    data = await parse_m(client, payload)
    assert "battery_voltage" not in data
    assert data["power_source"] == "battery"
    assert data["measurements"] == []
    assert data["next_transmission_at"] == TS + 900
    assert data["configuration_hash"] == 4242
    assert data["extended_configuration_hash"] == 99
    assert "cloud_token" not in data  # a credential: token() reads it, no record carries it
    assert data["transfer_reason"] == {
        "raw": reason,
        "first_after_reset": False,
        "button": True,
        "bluetooth": False,
        "retries": 5,
        "rules": [3, 12],
        "limit_end": False,
        "pin_tamper": False,
        "enclosure_tamper": True,
        "before_shutdown": True,
    }


async def test_a_full_size_payload_parses_well_within_the_time_limit(
    client: SandboxClient,
) -> None:
    offsets = [i % 50 - 25 for i in range(900)]
    payload = measurements(channel(1, offsets, start=200), base=60)
    assert len(payload) <= 1024
    data = await parse_m(client, payload)
    assert len(data["measurements"]) == 900
    assert data["measurements"][-1]["timestamp"] == TS + 899 * 60


# --- identify, device info, configuration, time -----------------------------------------


async def test_identify_reads_the_serial_of_each_message(client: SandboxClient) -> None:
    other = bytes.fromhex("282c0242abcd")
    info = protowire.encode([(1, "bytes", other), (3, "varint", 0x060A)])
    config = protowire.encode([(21, "varint", 1), (25, "bytes", other)])
    for path, payload in (("i", info), ("c", config)):
        response = await client.test_parser(SOURCE, contact=route(path, payload), identify=True)
        assert ok(response).device_id == "282c0242abcd"
    assert data_of(await client.test_parser(SOURCE, contact=route("i", info), identify=True)) == {
        "message": "device_info",
        "serial_number": "282c0242abcd",
        "software_version": "06.10",
    }


async def test_configuration_lists_errors_even_when_there_are_none(client: SandboxClient) -> None:
    config = protowire.encode([(25, "bytes", SERIAL), (21, "varint", 77), (44, "sint", -1)])
    data = data_of(await client.test_parser(SOURCE, contact=route("c", config), identify=True))
    assert data == {
        "message": "configuration",
        "serial_number": "282c02000001",
        "part": {"index": 1, "count": None, "last": False},
        "configuration_errors": [],
        "configuration_hash": 77,
        "configuration_hash_timestamp": None,
    }


async def test_time_request_is_answered_with_received_at(client: SandboxClient) -> None:
    contact = Contact(
        payload=b"",
        device_type="efento",
        device_id="282c02000001",
        path="t",
        received_at=unix(1_749_674_100),
    )
    result = ok(await client.test_parser(SOURCE, contact=contact))
    assert result.reply == bytes.fromhex("6849e874")
    assert data_of(await client.test_parser(SOURCE, contact=contact)) == {
        "message": "time_request",
        "time_request": True,
        "current_time": 1_749_674_100,
    }


async def test_time_request_carrying_a_serial_is_identified(client: SandboxClient) -> None:
    body = protowire.encode([(1, "bytes", SERIAL)])
    result = ok(await client.test_parser(SOURCE, contact=route("t", body), identify=True))
    assert result.device_id == "282c02000001"
    assert result.reply == RECEIVED_AT.to_bytes(4, "big")


async def test_only_the_time_path_gets_a_reply(client: SandboxClient) -> None:
    payload = measurements(channel(1, [0], start=1))
    result = ok(await client.test_parser(SOURCE, contact=route("m", payload), identify=True))
    assert result.reply is None


# --- malformed payloads ------------------------------------------------------------------

S1 = bytes.fromhex("0a06282c020000011001183c221308011094affefd0520c8012a061e289affff074001")

MALFORMED = [
    ("m", S1[:-1], "truncated varint"),
    ("m", S1[:20], "runs beyond the end"),
    ("m", b"\xff" * 12, "malformed measurements message"),
    ("m", bytes(range(256))[:40], "malformed measurements message"),
    ("m", protowire.encode([(1, "varint", 5)]), "serial_number (field 1) has wire type 0"),
    ("m", protowire.encode([(1, "bytes", b"\x01\x02")]), "is 2 bytes long, expected 6"),
    ("m", protowire.encode([(2, "bool", True), (3, "varint", 60)]), "no serial_number (field 1)"),
    ("m", measurements(extra=[(4, "varint", 1)]), "channel 1 (field 4) has wire type 0"),
    ("m", measurements(protowire.encode([(1, "string", "x")])), "type (field 1) has wire type 2"),
    ("m", measurements(protowire.encode([(1, "varint", 1), (5, "fixed32", 7)])), "sample_offsets"),
    (
        "m",
        measurements(protowire.encode([(1, "varint", 1), (5, "packed_sint", [1])])),
        "no timestamp",
    ),
    ("m", measurements(channel(5, [1, 0, -3])), "offset of 0"),
    ("m", measurements(channel(1, [0, 1], start=1), base=0), "measurement_period_base"),
    ("m", measurements(extra=[(16, "bytes", b"\xff\xfe")]), "cloud_token (field 16) is not"),
    ("m", measurements(extra=[(9, "varint", 1 << 40)]), "does not fit in a uint32"),
    ("i", protowire.encode([(3, "varint", 1546)]), "no serial_number (field 1)"),
    ("i", protowire.encode([(1, "bytes", SERIAL), (13, "varint", 3)]), "runtime_info"),
    ("c", protowire.encode([(1, "bytes", SERIAL), (21, "varint", 7)]), "(field 25)"),
    ("c", protowire.encode([(25, "bytes", SERIAL), (20, "fixed64", 1)]), "configuration_errors"),
    ("x", S1, "unknown Efento path 'x'"),
    ("", S1, "unknown Efento path ''"),
]


@pytest.mark.parametrize(("path", "payload", "needle"), MALFORMED)
async def test_malformed_payloads_fail_with_a_useful_message(
    client: SandboxClient, path: str, payload: bytes, needle: str
) -> None:
    response = await client.test_parser(SOURCE, contact=route(path, payload), identify=True)
    kind, message = failure(response)
    assert kind == "runtime_error"
    assert "ValueError" in message and needle in message, message


async def test_every_prefix_of_a_vector_parses_or_fails_cleanly(client: SandboxClient) -> None:
    for end in range(len(S1)):
        response = await client.test_parser(SOURCE, contact=route("m", S1[:end]), identify=True)
        if response.answer.error is not None:
            kind, message = failure(response)
            assert (kind, "ValueError") == ("runtime_error", message.split(":")[1].strip())
        else:
            assert ok(response).device_id == "282c02000001"


async def test_a_time_request_names_no_device_and_gets_the_time(client: SandboxClient) -> None:
    response = await client.test_parser(SOURCE, contact=route("t", b""), identify=True)
    assert ok(response).device_id is None
    assert ok(response).reply == RECEIVED_AT.to_bytes(4, "big")


async def test_a_registered_contact_parses_without_identify(client: SandboxClient) -> None:
    contact = Contact(payload=S1, device_type="efento", device_id="other-name", path="m")
    response = await client.test_parser(SOURCE, contact=contact)
    assert ok(response).device_id == "other-name"
    assert data_of(response)["serial_number"] == "282c02000001"
    assert any("differs from the serial number" in w for w in ok(response).warnings)


# --- commands ----------------------------------------------------------------------------


async def test_set_config_encodes_every_field_in_field_number_order(
    client: SandboxClient,
) -> None:
    params = {
        "data_endpoint": "m",
        "measurement_period_factor": 5,
        "configuration_request": False,  # proto3 writes no false: nor does the parser
        "data_server_port": 5683,
        "data_server_ip": "coap.example.org",
        "current_time": 1_749_674_100,
        "device_info_request": True,
        "ack_interval": 0xFFFFFFFF,
        "transmission_interval": 900,
        "measurement_period_base": 60,
    }
    expected = protowire.encode(
        [
            (2, "varint", 60),
            (3, "varint", 900),
            (5, "varint", 0xFFFFFFFF),
            (6, "bool", True),
            (8, "varint", 1_749_674_100),
            (11, "string", "coap.example.org"),
            (12, "varint", 5683),
            (26, "varint", 5),
            (32, "string", "m"),
        ]
    )
    assert await run_command(client, SOURCE, "set_config", params) == ("ok", expected)


async def test_request_commands(client: SandboxClient) -> None:
    assert await run_command(client, SOURCE, "request_device_info") == ("ok", b"\x30\x01")
    assert await run_command(client, SOURCE, "request_configuration") == (
        "ok",
        bytes.fromhex("980101"),
    )


BAD_COMMANDS = [
    ("reboot", {}, "unknown command 'reboot'"),
    ("set_config", {"measurement_period": 60}, "unknown parameter 'measurement_period'"),
    ("set_config", {}, "needs at least one parameter"),
    ("set_config", {"transmission_interval": "900"}, "transmission_interval must be an integer"),
    ("set_config", {"transmission_interval": 900.0}, "transmission_interval must be an integer"),
    ("set_config", {"measurement_period_base": True}, "must be an integer"),
    ("set_config", {"device_info_request": 1}, "device_info_request must be true or false"),
    ("set_config", {"data_server_ip": 10}, "data_server_ip must be a string"),
    ("set_config", {"data_endpoint": "much-too-long-endpoint"}, "data_endpoint must be 1 to 11"),
    ("set_config", {"transmission_interval": 10}, "out of range [60, 604800]"),
    ("set_config", {"measurement_period_base": 0}, "out of range [1, 65535]"),
    ("set_config", {"current_time": -1}, "current_time = -1 is out of range"),
    ("request_device_info", {"now": True}, "takes no parameters"),
    ("set_config", {"configuration_request": False}, "every value given is false or empty"),
    ("set_config", {"apn": "x" * 50}, "apn must be 1 to 49 printable ASCII characters"),
    ("set_config", {"apn": "bad\napn"}, "apn must be 1 to 49 printable ASCII"),
    ("set_config", {"plmn_selection": 99}, "plmn_selection = 99 is out of range [100, 1000000]"),
    ("set_config", {"cloud_token_config": 3}, "out of range [1, 2] (or 255)"),
    ("set_config", {"supervision_period": 60}, "out of range [180, 604800] (or 4294967295)"),
    ("set_config", {"dns_server_ip": [1, 2, 3, 4, 5]}, "holds 5 numbers, expected 1 to 4"),
    ("set_config", {"dns_server_ip": [1, 2, 3, 999]}, "holds 999, out of range [0, 255]"),
    ("set_config", {"rules": {"condition": "disabled"}}, "rules must be a list of at most 16"),
    ("set_config", {"rules": [{"condition": "disabled"}] * 17}, "at most 16 objects"),
    ("set_config", {"rules": [{"action": "no_action"}]}, "rules[0] needs condition"),
    (
        "set_config",
        {"rules": [{"condition": "on_measurement", "parameters": []}]},
        "rules[0] takes 1 or 2 or 3 parameters, got 0",
    ),
    (
        "set_config",
        {"rules": [{"condition": "disabled", "channels": [7]}]},
        "rules[0].channels holds 7, out of range [1, 6]",
    ),
    (
        "set_config",
        {"rules": [{"condition": "disabled", "channels": [1], "channel_mask": 1}]},
        "gives both channels and channel_mask",
    ),
    ("set_config", {"rules": [{"condition": "disabled", "when": 1}]}, "unknown keys when"),
    (
        "set_config",
        {"rules": [{"condition": "disabled", "action": "explode"}]},
        "rules[0].action must be one of trigger_transmission",
    ),
    (
        "set_config",
        {"rules": [{"condition": "diff_threshold", "parameters": [1, 2, 3, 1 << 31]}]},
        "out of range [-2147483648, 2147483647]",
    ),
    (
        "set_config",
        {"calendars": [{"type": "week", "parameters": [1]}]},
        "calendars[0] takes 4 parameters, got 1",
    ),
    (
        "set_config",
        {"calendars": [{"type": "week", "rules": [17], "parameters": [1, 2, 3, 4]}]},
        "calendars[0].rules holds 17",
    ),
]


@pytest.mark.parametrize(("name", "params", "needle"), BAD_COMMANDS)
async def test_bad_commands_are_refused_by_name(
    client: SandboxClient, name: str, params: dict[str, Any], needle: str
) -> None:
    kind, message = await run_command(client, SOURCE, name, params)
    assert kind == "runtime_error"
    assert isinstance(message, str) and "ValueError" in message and needle in message, message


async def test_token_is_the_cloud_token(client: SandboxClient) -> None:
    # The gateway checks it as the device's token; parse() does not copy it into data.
    tokened = measurements(extra=[(16, "string", "token-1")])
    response = await client.test_parser(SOURCE, contact=route("m", tokened), identify=True)
    assert ok(response).token == "token-1" and "cloud_token" not in data_of(response)
    plain = await client.test_parser(SOURCE, contact=route("m", measurements()), identify=True)
    assert ok(plain).token is None
