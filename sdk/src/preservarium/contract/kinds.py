"""Why a contact or a command produced no result: the one list of error kinds.

The sandbox answers with the script kinds; the gateway adds `device_mismatch` for a
route contact whose parser named a device the contact may not speak for. The gRPC
messages carry the same kinds as protobuf enum numbers: only the sandbox client and the
sandbox's wire module translate between the two.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    """The `error.kind` of an `uplink.failed` record and of a sandbox answer."""

    COMPILE_ERROR = "compile_error"
    MISSING_FUNCTION = "missing_function"
    IMPORT_DENIED = "import_denied"
    RUNTIME_ERROR = "runtime_error"
    TIMEOUT = "timeout"
    MEMORY_LIMIT = "memory_limit"
    INVALID_OUTPUT = "invalid_output"
    QUARANTINED = "quarantined"
    PARSER_NOT_FOUND = "parser_not_found"
    SANDBOX_UNAVAILABLE = "sandbox_unavailable"
    DEVICE_MISMATCH = "device_mismatch"


# What the sandbox itself may answer (every kind but the gateway's own).
SANDBOX_KINDS = frozenset(ErrorKind) - {ErrorKind.DEVICE_MISMATCH}
