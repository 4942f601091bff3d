"""Efento's own message definitions, compiled with grpc_tools.protoc for the tests only:
the independent encoder that the Efento parser's downlinks are checked against.

The parser builds ProtoConfig messages by hand with `protowire`; here the same messages
are built by the real protobuf library from Efento's `.proto` files
(tests/data/efento/, see NOTICE.md). `config_bytes(params)` turns a `set_config` params
object into ProtoConfig bytes without any of the parser's code.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from grpc_tools import protoc

PROTOS = Path(__file__).resolve().parents[1] / "data" / "efento"
FILES = (
    "proto_measurement_types.proto",
    "proto_config_types.proto",
    "proto_config_rule.proto",
    "proto_config.proto",
    "proto_measurements.proto",
    "proto_device_info.proto",
)


@cache
def modules() -> dict[str, ModuleType]:
    """The generated modules, by .proto stem (compiled once per test process)."""
    out = Path(tempfile.mkdtemp(prefix="efento-proto-"))
    args = ["protoc", f"-I{PROTOS}", f"--python_out={out}", *(str(PROTOS / f) for f in FILES)]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc could not compile {PROTOS}")
    sys.path.insert(0, str(out))  # the generated modules import each other by bare name
    try:
        return {Path(f).stem: importlib.import_module(f"{Path(f).stem}_pb2") for f in FILES}
    finally:
        sys.path.remove(str(out))


def _mask(numbers: list[int]) -> int:
    mask = 0
    for number in numbers:
        mask |= 1 << (number - 1)
    return mask


def _rule(item: dict[str, Any]) -> Any:
    rule_pb = modules()["proto_config_rule"]
    rule = rule_pb.ProtoRule(
        channel_mask=item.get("channel_mask", _mask(item.get("channels", []))),
        parameters=item.get("parameters", []),
    )
    rule.condition = rule_pb.Condition.Value(f"CONDITION_{item['condition'].upper()}")
    if "action" in item:
        rule.action = rule_pb.Action.Value(f"ACTION_{item['action'].upper()}")
    return rule


def _calendar(item: dict[str, Any]) -> Any:
    rule_pb = modules()["proto_config_rule"]
    return rule_pb.ProtoCalendar(
        rule_mask=item.get("rule_mask", _mask(item.get("rules", []))),
        parameters=item.get("parameters", []),
        type=rule_pb.CalendarType.Value(f"CALENDAR_TYPE_{item['type'].upper()}"),
    )


def config_message(params: dict[str, Any]) -> Any:
    """A ProtoConfig with `params` set: the parameter names are ProtoConfig's field names."""
    values = dict(params)
    rules = [_rule(item) for item in values.pop("rules", [])]
    calendars = [_calendar(item) for item in values.pop("calendars", [])]
    message = modules()["proto_config"].ProtoConfig(**values)
    message.rules.extend(rules)
    message.calendars.extend(calendars)
    return message


def config_bytes(params: dict[str, Any]) -> bytes:
    """The serialised ProtoConfig, as the real protobuf library writes it."""
    return bytes(config_message(params).SerializeToString())
