"""Efento's protobuf messages, encoded and decoded with `protowire` (no generated code).

Field numbers are those of Efento's published Proto-files (firmware 06.x and 07.x), as
restated in the project's Efento device note.
"""

from __future__ import annotations

from dataclasses import dataclass

from preservarium import protowire

SERIAL_PREFIX = bytes.fromhex("282c02")
TEMPERATURE, HUMIDITY = 1, 2
SOFTWARE_VERSION = 0x0707  # 07.07
MODEM_BC660 = 4

Field = tuple[int, str, object]


@dataclass(frozen=True, slots=True)
class Channel:
    """One channel of a measurements message: samples one period apart from `timestamp`."""

    type: int
    timestamp: int
    samples: tuple[int, ...]

    def encode(self) -> bytes:
        """ProtoChannel: the first sample is the start point, every sample an offset to it."""
        start = self.samples[0]
        return protowire.encode(
            [
                (1, "varint", self.type),
                (2, "varint", self.timestamp),
                (4, "sint", start),
                (5, "packed_sint", [sample - start for sample in self.samples]),
            ]
        )


@dataclass(frozen=True, slots=True)
class Measurements:
    """ProtoMeasurements, the body of a contact on path `m`."""

    serial: bytes
    period_base: int
    period_factor: int
    channels: tuple[Channel, ...]
    next_transmission_at: int
    transfer_reason: int
    configuration_hash: int
    cloud_token: str
    battery_millivolts: int

    def encode(self) -> bytes:
        """The wire bytes."""
        fields: list[Field] = [
            (1, "bytes", self.serial),
            (2, "bool", True),  # battery OK
            (3, "varint", self.period_base),
        ]
        fields += [(4, "message", channel.encode()) for channel in self.channels]
        fields += [
            (5, "varint", self.next_transmission_at),
            (6, "varint", self.transfer_reason),
            (8, "varint", self.period_factor),
            (9, "varint", self.configuration_hash),
            (16, "string", self.cloud_token),
            # battery_level: volts x 100 x 6, plus the power source (0 = battery).
            (18, "varint", self.battery_millivolts // 10 * 6),
        ]
        return protowire.encode(fields)


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """ProtoDeviceInfo, the body of a contact on path `i`."""

    serial: bytes
    up_time_s: int
    message_counters: tuple[int, int, int]  # confirmable, non-confirmable, successful
    mcu_temperature: int
    battery_millivolts: int
    cloud_token: str

    def encode(self) -> bytes:
        """The wire bytes."""
        runtime = protowire.encode(
            [
                (1, "varint", self.up_time_s),
                (2, "packed_varint", list(self.message_counters)),
                (3, "sint", self.mcu_temperature),
                (4, "varint", self.battery_millivolts),
                (10, "varint", 0),  # reset counter
            ]
        )
        modem = protowire.encode([(1, "varint", MODEM_BC660)])
        return protowire.encode(
            [
                (1, "bytes", self.serial),
                (3, "varint", SOFTWARE_VERSION),
                (13, "message", runtime),
                (14, "message", modem),
                (16, "string", self.cloud_token),
            ]
        )


@dataclass(frozen=True, slots=True)
class Configuration:
    """ProtoConfig as a device reports it on path `c` (the serial is field 25 there)."""

    serial: bytes
    period_base: int
    period_factor: int
    transmission_interval: int
    ack_interval: int
    configuration_hash: int
    channel_types: tuple[int, ...]

    def encode(self) -> bytes:
        """The wire bytes."""
        return protowire.encode(
            [
                (2, "varint", self.period_base),
                (3, "varint", self.transmission_interval),
                (5, "varint", self.ack_interval),
                (21, "varint", self.configuration_hash),
                (25, "bytes", self.serial),
                (26, "varint", self.period_factor),
                (27, "packed_varint", list(self.channel_types)),
            ]
        )


# ProtoConfig fields a server may send down: number -> (name, kind).
CONFIG_FIELDS: dict[int, tuple[str, str]] = {
    2: ("measurement_period_base", "uint"),
    3: ("transmission_interval", "uint"),
    4: ("ble_turnoff_time", "uint"),
    5: ("ack_interval", "uint"),
    6: ("device_info_request", "bool"),
    8: ("current_time", "uint"),
    9: ("transfer_limit", "uint"),
    10: ("transfer_limit_timer", "uint"),
    11: ("data_server_ip", "string"),
    12: ("data_server_port", "uint"),
    13: ("update_server_ip", "string"),
    16: ("apn", "string"),
    19: ("configuration_request", "bool"),
    26: ("measurement_period_factor", "uint"),
    29: ("supervision_period", "uint"),
    32: ("data_endpoint", "string"),
    33: ("configuration_endpoint", "string"),
    34: ("device_info_endpoint", "string"),
    35: ("time_endpoint", "string"),
}

ConfigValue = int | bool | str | bytes


@dataclass(frozen=True, slots=True)
class ConfigField:
    """One field of a downlink configuration: named when Efento's table names it."""

    number: int
    name: str | None
    value: ConfigValue

    def __str__(self) -> str:
        label = self.name or f"field {self.number}"
        if isinstance(self.value, bool):
            return f"{label}={str(self.value).lower()}"
        if isinstance(self.value, bytes):
            return f"{label}=0x{self.value.hex()}"
        return f"{label}={self.value}"


def decode_configuration(payload: bytes) -> list[ConfigField]:
    """A downlink's fields in wire order; protowire.WireError when it is not protobuf."""
    return [_config_field(number, value) for number, _, value in protowire.decode_fields(payload)]


def _config_field(number: int, value: int | bytes) -> ConfigField:
    name, kind = CONFIG_FIELDS.get(number, (None, "raw"))
    decoded: ConfigValue = value
    if kind == "bool" and isinstance(value, int):
        decoded = value != 0
    elif kind == "string" and isinstance(value, bytes):
        decoded = value.decode("utf-8", "replace")
    return ConfigField(number, name, decoded)
