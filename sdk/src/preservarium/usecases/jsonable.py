"""One JSON rendering for the CLI's `--json` and the API: timestamps as RFC 3339 UTC with
`Z`, dataclasses as objects."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any, cast


def json_default(value: Any) -> Any:
    """`default=` for json.dumps: what plain JSON lacks."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def jsonable(value: Any) -> Any:
    """`value` as plain JSON values, exactly as `--json` prints it."""
    return json.loads(json.dumps(value, default=json_default, ensure_ascii=False))


def json_object(value: Any) -> dict[str, Any]:
    """`value` (a mapping or a dataclass) as a plain JSON object."""
    return cast(dict[str, Any], jsonable(value))
