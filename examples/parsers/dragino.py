"""Parser for Dragino NB-IoT temperature & humidity sensors (N95S31B layout).

The device posts to /d/{device_id}: the URI names it, so identify() is only a convenience
(it returns the id carried in the frame). Dragino sensors send the frame as ASCII hex text
(two hex characters per byte); some integrations convert it to raw bytes first. Both are
accepted: a payload of an even number of ASCII hex digits is decoded as text first. Every
valid raw frame has an odd length, so the two forms cannot be confused.

Frame layouts (big-endian):

    21 bytes       device id 6 | version 2 | battery mV 2 | signal 1 | model 1 |
                   reserved 5 | temperature 2 | humidity 2
    27 + 8 N bytes device id 8 | (the same fields) | Unix timestamp 4 |
                   N stored records of [temperature 2 | humidity 2 | timestamp 4]

Temperatures are signed tenths of a degree Celsius, humidities unsigned tenths of a
percent. Any other length is refused with a ValueError naming it.
"""

import struct

HEX_DIGITS = b"0123456789abcdefABCDEF"
LEGACY_LENGTH = 21  # 6-byte device id, no timestamp
TIMESTAMPED_LENGTH = 27  # 8-byte device id, timestamp, no stored record
RECORD_LENGTH = 8
CSQ_UNKNOWN = 99


def is_hex_text(payload):
    return len(payload) > 0 and all(byte in HEX_DIGITS for byte in payload)


def frame_bytes(payload):
    """The binary frame: ASCII hex text is decoded, raw bytes are taken as they are."""
    if is_hex_text(payload) and len(payload) % 2 == 0:
        return bytes.fromhex(payload.decode("ascii"))
    return bytes(payload)


def frame_layout(frame, payload):
    """(device id length, has timestamp, number of stored records) for a frame's length."""
    size = len(frame)
    if size == LEGACY_LENGTH:
        return 6, False, 0
    if size >= TIMESTAMPED_LENGTH and (size - TIMESTAMPED_LENGTH) % RECORD_LENGTH == 0:
        return 8, True, (size - TIMESTAMPED_LENGTH) // RECORD_LENGTH
    if is_hex_text(payload):
        form = f" (hex text of {len(payload)} characters)"
        if len(payload) % 2:
            form = f" (hex text of an odd number of characters, {len(payload)}: truncated?)"
    else:
        form = ""
    raise ValueError(
        f"a Dragino frame of {size} bytes{form} fits no layout: expected {LEGACY_LENGTH} "
        f"bytes (6-byte id) or {TIMESTAMPED_LENGTH} + {RECORD_LENGTH} x N bytes "
        "(8-byte id, timestamp, N stored records)"
    )


def firmware_version(raw):
    """0x006e = 110 -> "1.1.0": each decimal digit is one part of the version."""
    return ".".join(str(raw))


def climate(channel_time, temperature_raw, humidity_raw):
    """The two measurements of one reading: temperature on channel 1, humidity on 2."""
    humidity = humidity_raw / 10
    if humidity > 100:
        warn(f"humidity {humidity} %RH at {channel_time} is above 100 %")
    return [
        {
            "channel": 1,
            "type": "temperature",
            "timestamp": channel_time,
            "value": temperature_raw / 10,
        },
        {"channel": 2, "type": "humidity", "timestamp": channel_time, "value": humidity},
    ]


def decode_frame(payload):
    frame = frame_bytes(payload)
    id_length, has_timestamp, records = frame_layout(frame, payload)
    version, millivolts, signal, model = struct.unpack_from(">HHBB", frame, id_length)
    # 5 reserved bytes follow (DS18B20 temperature, interrupt and ADC on other models).
    temperature, humidity = struct.unpack_from(">hH", frame, id_length + 11)
    frame_data = {
        "device_id": frame[:id_length].hex(),
        "firmware_version": firmware_version(version),
        "battery_voltage": millivolts / 1000,
        "signal": signal,
        "model": model,
        "temperature": temperature,
        "humidity": humidity,
        "timestamp": None,
        "records": [],
    }
    if has_timestamp:
        offset = id_length + 15
        frame_data["timestamp"] = struct.unpack_from(">I", frame, offset)[0]
        # Stored records follow the timestamp; they keep the order the device sent them in.
        for index in range(records):
            record_offset = offset + 4 + index * RECORD_LENGTH
            frame_data["records"].append(struct.unpack_from(">hHI", frame, record_offset))
    return frame_data


def identify(payload, metadata):
    """The device id carried in the frame (12 or 16 lower-case hex digits)."""
    return decode_frame(payload)["device_id"]


def parse(payload, metadata):
    """Decode one uplink: device status plus temperature and humidity measurements."""
    frame = decode_frame(payload)
    data = {
        "device_id": frame["device_id"],
        "firmware_version": frame["firmware_version"],
        "battery_voltage": frame["battery_voltage"],
        "signal": frame["signal"],
        "model": frame["model"],
    }
    # CSQ 0..31 maps to -113..-51 dBm in 2 dB steps; 99 means unknown.
    if frame["signal"] <= 31:
        data["rssi_dbm"] = -113 + 2 * frame["signal"]
    elif frame["signal"] != CSQ_UNKNOWN:
        warn(f"signal (CSQ) {frame['signal']} is outside 0..31 and is not 99 (unknown)")

    reading_time = frame["timestamp"]
    if reading_time is None:
        reading_time = metadata.get("received_at")
    else:
        data["timestamp"] = reading_time
    measurements = climate(reading_time, frame["temperature"], frame["humidity"])
    for temperature, humidity, record_time in frame["records"]:
        measurements.extend(climate(record_time, temperature, humidity))
    data["measurements"] = measurements
    return data
