"""Parsers the gateway tests upload, and what they read and write."""

import struct

THERMO = """
import struct

def identify(payload, metadata):
    if len(payload) < 4:
        raise ValueError("too short to carry a serial")
    return payload[:4].hex()

def parse(payload, metadata):
    if len(payload) < 6:
        raise ValueError("payload too short: " + str(len(payload)) + " bytes")
    (raw,) = struct.unpack(">h", payload[4:6])
    if raw < -400:
        warn("implausible temperature")
    return {"temperature": raw / 10, "path": metadata["path"], "query": metadata["query"]}

def reply(payload, metadata):
    if metadata["path"] == "t":
        return struct.pack(">I", metadata["received_at"])
    return None

def format_command(command):
    if command["command"] == "set_period":
        return b"P" + struct.pack(">H", command["params"]["seconds"])
    if command["command"] == "explode":
        raise ValueError("cannot explode")
    raise ValueError("unknown command " + command["command"])
"""

# A THERMO reading: serial 0a0b0c0d, 20.0 °C; and what THERMO formats for
# set_period(seconds=900).
READING = bytes.fromhex("0a0b0c0d") + struct.pack(">h", 200)
SET_PERIOD_900 = b"P" + struct.pack(">H", 900)
