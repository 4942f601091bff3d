"""Realistic Efento measurement uplinks for many devices, encoded with protowire."""

from __future__ import annotations

import random

from preservarium import protowire


def expose_protowire() -> None:
    """Let plain `exec` of a parser `import protowire`, as the sandbox's facade allows."""
    import sys

    sys.modules.setdefault("protowire", protowire)


def serial(n: int) -> bytes:
    """The 6-byte serial number of simulated device n."""
    return bytes.fromhex("282c02") + n.to_bytes(3, "big")


def efento_measurement(n: int, *, rng: random.Random, now: int = 1_764_000_000) -> bytes:
    """An Efento `m` payload: temperature and humidity channels, 5 samples each."""
    temperature = [rng.randint(-5, 5) for _ in range(5)]
    humidity = [rng.randint(-2, 2) for _ in range(5)]
    channels = [
        protowire.encode([(1, "varint", 1), (2, "varint", now - 1200),
                          (4, "sint", 215 + rng.randint(-30, 30)),
                          (5, "packed_sint", temperature)]),
        protowire.encode([(1, "varint", 2), (2, "varint", now - 1200),
                          (4, "sint", 45 + rng.randint(-5, 5)), (5, "packed_sint", humidity)]),
    ]  # fmt: skip
    return protowire.encode(
        [(1, "bytes", serial(n)), (2, "bool", True), (3, "varint", 60)]
        + [(4, "message", channel) for channel in channels]
        + [(5, "varint", now + 900), (6, "varint", 0), (8, "varint", 5),
           (9, "varint", 1234), (16, "string", "867997031959413"), (18, "varint", 3612)]
    )  # fmt: skip


def payloads(devices: int, *, seed: int = 7) -> list[bytes]:
    """One measurement payload per device."""
    rng = random.Random(seed)
    return [efento_measurement(n, rng=rng) for n in range(devices)]
