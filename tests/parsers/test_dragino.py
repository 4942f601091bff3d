"""examples/parsers/dragino.py, run in the real sandbox service."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from preservarium.contract.contact import Contact
from preservarium.sandbox_client import SandboxClient

from tests.parsers.support import (
    RECEIVED_AT,
    check_example,
    check_with_sdk_runner,
    data_of,
    examples,
    failure,
    ok,
    source,
)
from tests.support.contacts import unix

SOURCE = source("dragino")
EXAMPLES = examples("dragino")
DEVICE = "n95s31b-7"


def frame(
    *,
    device_id: bytes = bytes.fromhex("f86841105675"),
    version: int = 110,
    millivolts: int = 3300,
    csq: int = 20,
    model: int = 1,
    temperature: int = 215,
    humidity: int = 456,
    timestamp: int | None = None,
    records: list[tuple[int, int, int]] | None = None,
) -> bytes:
    """A binary frame in the layout the note describes."""
    body = device_id + struct.pack(">HHBB", version, millivolts, csq, model) + bytes(5)
    body += struct.pack(">hH", temperature, humidity)
    if timestamp is not None:
        body += struct.pack(">I", timestamp)
    for record in records or []:
        body += struct.pack(">hHI", *record)
    return body


def registered(payload: bytes) -> Contact:
    """A contact of a registered device on /d/{id}: no identify, path ""."""
    return Contact(
        payload=payload,
        device_type="dragino",
        device_id=DEVICE,
        path="",
        received_at=unix(RECEIVED_AT),
    )


async def parse(client: SandboxClient, payload: bytes) -> Any:
    response = await client.test_parser(SOURCE, contact=registered(payload))
    assert ok(response).device_id == DEVICE
    return data_of(response)


def climate(ts: int, temperature: float, humidity: float) -> list[dict[str, Any]]:
    return [
        {"channel": 1, "type": "temperature", "timestamp": ts, "value": temperature},
        {"channel": 2, "type": "humidity", "timestamp": ts, "value": humidity},
    ]


@pytest.mark.parametrize("example", EXAMPLES, ids=[e["description"][:40] for e in EXAMPLES])
async def test_example(client: SandboxClient, example: dict[str, Any]) -> None:
    await check_example(client, SOURCE, "dragino", example)


async def test_examples_pass_the_sdk_runner(client: SandboxClient) -> None:
    assert await check_with_sdk_runner(client, "dragino", "dragino") == len(EXAMPLES)


async def test_legacy_frame_uses_received_at(client: SandboxClient) -> None:
    data = await parse(client, frame(temperature=-273, humidity=1000, csq=31, model=3))
    assert data == {
        "device_id": "f86841105675",
        "firmware_version": "1.1.0",
        "battery_voltage": 3.3,
        "signal": 31,
        "rssi_dbm": -51,
        "model": 3,
        "measurements": climate(RECEIVED_AT, -27.3, 100.0),
    }


async def test_raw_bytes_and_ascii_hex_decode_the_same(client: SandboxClient) -> None:
    binary = frame(
        device_id=bytes.fromhex("0869941050123456"),
        timestamp=1_690_000_000,
        records=[(100, 500, 1_689_999_000), (-5, 999, 1_689_998_000)],
    )
    raw = await parse(client, binary)
    assert raw == await parse(client, binary.hex().encode())
    assert raw == await parse(client, binary.hex().upper().encode())
    assert raw["device_id"] == "0869941050123456"
    assert raw["timestamp"] == 1_690_000_000
    assert raw["measurements"] == (
        climate(1_690_000_000, 21.5, 45.6)
        + climate(1_689_999_000, 10.0, 50.0)
        + climate(1_689_998_000, -0.5, 99.9)
    )


async def test_many_stored_records(client: SandboxClient) -> None:
    records = [(i, 400 + i, 1_690_000_000 - 600 * i) for i in range(1, 100)]
    binary = frame(device_id=bytes(8), timestamp=1_690_000_000, records=records)
    data = await parse(client, binary)
    assert len(data["measurements"]) == 200
    assert data["measurements"][-1] == climate(1_690_000_000 - 600 * 99, 9.9, 49.9)[1]


async def test_identify_returns_the_frame_id(client: SandboxClient) -> None:
    contact = Contact(payload=frame().hex().encode(), device_type="dragino", path="")
    response = await client.test_parser(SOURCE, contact=contact, identify=True)
    assert ok(response).device_id == "f86841105675"


async def test_an_out_of_range_signal_warns(client: SandboxClient) -> None:
    response = await client.test_parser(SOURCE, contact=registered(frame(csq=50)))
    assert "rssi_dbm" not in data_of(response)
    assert any("CSQ" in warning for warning in ok(response).warnings)


@pytest.mark.parametrize("size", [0, 1, 6, 20, 22, 23, 25, 26, 28, 34, 36])
async def test_lengths_that_fit_no_layout_are_refused(client: SandboxClient, size: int) -> None:
    payload = (frame(device_id=bytes(8), timestamp=1) + bytes(16))[:size]
    kind, message = failure(await client.test_parser(SOURCE, contact=registered(payload)))
    assert kind == "runtime_error"
    assert f"frame of {size} bytes fits no layout" in message, message


async def test_truncated_hex_text_is_named(client: SandboxClient) -> None:
    text = frame().hex().encode()[:-1]
    kind, message = failure(await client.test_parser(SOURCE, contact=registered(text)))
    assert kind == "runtime_error"
    assert "hex text of an odd number of characters, 41" in message, message
