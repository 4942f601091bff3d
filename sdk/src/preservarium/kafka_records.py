"""What the CLI and the simulator share when they read the connector's topics.

aiokafka itself is the SDK's optional `kafka` extra: nothing here imports it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from preservarium.text import clean_text, has_surrogates

Record = dict[str, Any]


def decode_record(value: bytes | None) -> Record | None:
    """A record's JSON object, or None for anything else (a foreign or broken record).

    Only UTF-8 is read, and lone surrogates (`\\ud800` escapes) come back as U+FFFD:
    whatever is read here gets printed, and a terminal cannot encode a lone surrogate.
    """
    try:
        record = json.loads((value or b"").decode("utf-8"))
        if not isinstance(record, dict):
            return None
        text = json.dumps(record, ensure_ascii=False)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return json.loads(clean_text(text)) if has_surrogates(text) else record


def quiet_aiokafka() -> None:
    """Silence aiokafka's log: it logs every failed connection attempt, and our tools
    report a broker that cannot be reached in one line of their own."""
    kafka_log = logging.getLogger("aiokafka")
    kafka_log.addHandler(logging.NullHandler())
    kafka_log.propagate = False
