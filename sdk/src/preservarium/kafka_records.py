"""What the CLI and the simulator share when they read the connector's topics.

aiokafka itself is the SDK's optional `kafka` extra: nothing here imports it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

Record = dict[str, Any]


def decode_record(value: bytes | None) -> Record | None:
    """A record's JSON object, or None for anything else (a foreign or broken record)."""
    try:
        record = json.loads(value or b"")
    except (ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


def quiet_aiokafka() -> None:
    """Silence aiokafka's log: it logs every failed connection attempt, and our tools
    report a broker that cannot be reached in one line of their own."""
    kafka_log = logging.getLogger("aiokafka")
    kafka_log.addHandler(logging.NullHandler())
    kafka_log.propagate = False
