"""Identifier rules shared by the gateway, the CLI and the repositories."""

from __future__ import annotations

import re

DEVICE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
DEVICE_TYPE = re.compile(r"[A-Za-z0-9._-]{1,64}")
# A device id ends up in URIs, Kafka keys and file names, where these two mean directories.
DOT_IDS = frozenset({".", ".."})


def is_device_id(value: str) -> bool:
    """1 to 64 characters of `[A-Za-z0-9._:-]`, and not `.` or `..`."""
    return DEVICE_ID.fullmatch(value) is not None and value not in DOT_IDS


def is_device_type(value: str) -> bool:
    """1 to 64 characters of `[A-Za-z0-9._-]`."""
    return DEVICE_TYPE.fullmatch(value) is not None
