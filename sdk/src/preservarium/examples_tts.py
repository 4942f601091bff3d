"""Examples in The Things Stack's device repository codec format, read as our own.

A codec file of the device repository (`vendor/<vendor>/<codec>.yaml`) is a mapping:

    uplinkDecoder:
      fileName: codec.js
      examples:
        - description: a reading
          input: {fPort: 1, bytes: [1, 2, 3], recvTime: "2026-11-30T12:00:00Z"}
          output: {data: {...}, warnings: [], errors: []}
    downlinkEncoder:
      examples:
        - description: a command
          input: {data: {command: set_period, params: {seconds: 900}}}
          output: {bytes: [80, 3, 132], fPort: 1, warnings: [], errors: []}

Each uplink example becomes an uplink case of a registered device (`device_id`
"test-device": no identify() needed), each encoder example a command case. `fPort` has
no counterpart in a CoAP contact and is accepted and not used, and so is
`normalizedOutput`; `output.errors`, when not empty, expects the call to fail with a
message containing each of them. A `downlinkDecoder` section is read for its structure
and not run: a parser has no downlink decoder.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from preservarium.contract.command_requests import encode_params
from preservarium.contract.contact import Contact
from preservarium.examples import (
    ANY_ERROR,
    DEFAULT_COMMAND_DEVICE_ID,
    DEFAULT_REQUEST_ID,
    CommandExample,
    Example,
    ExamplesError,
    UplinkExample,
    check_json,
    description_of,
    mapping_of,
)
from preservarium.sandbox_client import CommandInput

SECTIONS = frozenset({"uplinkDecoder", "downlinkEncoder", "downlinkDecoder"})
# A downlink encoder's data without a "command" key is formatted as this command.
DEFAULT_COMMAND = "downlink"

_SECTION_KEYS = frozenset({"fileName", "examples"})
_EXAMPLE_KEYS = frozenset({"description", "input", "output"})
_UPLINK_INPUT_KEYS = frozenset({"fPort", "bytes", "recvTime"})
# normalizedOutput (the normalized payload of newer files) is accepted and not compared.
_UPLINK_OUTPUT_KEYS = frozenset({"data", "warnings", "errors", "normalizedOutput"})
_ENCODER_INPUT_KEYS = frozenset({"data"})
_ENCODER_OUTPUT_KEYS = frozenset({"bytes", "fPort", "warnings", "errors"})


def is_codec_document(document: Mapping[Any, Any]) -> bool:
    """True when `document` is a codec file: a mapping with at least one codec section."""
    return bool(document) and any(key in SECTIONS for key in document)


def codec_examples(document: Mapping[Any, Any]) -> list[Example]:
    """The uplink and command cases of a codec file; ExamplesError naming the example."""
    unknown = [key for key in document if key not in SECTIONS]
    if unknown:
        raise ExamplesError(
            f"a codec file has unknown key {unknown[0]!r}; allowed: {', '.join(sorted(SECTIONS))}"
        )
    examples: list[Example] = []
    for section, read in (("uplinkDecoder", _uplink), ("downlinkEncoder", _encoder)):
        for index, item in enumerate(_section(document, section), start=1):
            examples.append(_named(section, index, item, read))
    for index, item in enumerate(_section(document, "downlinkDecoder"), start=1):
        _named("downlinkDecoder", index, item, _structure_only)
    return examples


def _section(document: Mapping[Any, Any], name: str) -> list[Any]:
    section = document.get(name)
    if section is None:
        return []
    where = name
    mapping = mapping_of(section, where, _SECTION_KEYS)
    items = mapping.get("examples", [])
    if not isinstance(items, list):
        raise ExamplesError(f"{where}.examples must be a list")
    return items


def _named(section: str, index: int, item: object, read: Any) -> Any:
    where = f"{section} example {index}"
    if isinstance(item, dict) and isinstance(item.get("description"), str):
        where += f" ({item['description']!r})"
    try:
        return read(mapping_of(item, "the example", _EXAMPLE_KEYS))
    except ExamplesError as exc:
        raise ExamplesError(f"{where}: {exc}") from None


def _uplink(item: dict[Any, Any]) -> UplinkExample:
    spec = mapping_of(item.get("input"), "input", _UPLINK_INPUT_KEYS)
    output = mapping_of(item.get("output", {}), "output", _UPLINK_OUTPUT_KEYS)
    errors = _texts(output, "errors")
    expected: dict[str, Any] = {}
    if not errors:
        if "data" in output:
            if not isinstance(output["data"], dict):
                raise ExamplesError("output.data must be a mapping")
            check_json(output["data"], "output.data")
            expected["data"] = output["data"]
        if "warnings" in output:
            expected["warnings"] = list(_texts(output, "warnings"))
    return UplinkExample(
        description=description_of(item),
        sent=Contact(
            _bytes(spec.get("bytes"), "input.bytes"), "", device_id=DEFAULT_COMMAND_DEVICE_ID
        ),
        received_at=_recv_time(spec.get("recvTime")),
        output=expected,
        error=ANY_ERROR if errors else None,
        error_texts=errors,
    )


def _encoder(item: dict[Any, Any]) -> CommandExample:
    spec = mapping_of(item.get("input"), "input", _ENCODER_INPUT_KEYS)
    output = mapping_of(item.get("output", {}), "output", _ENCODER_OUTPUT_KEYS)
    data = spec.get("data", {})
    if not isinstance(data, dict):
        raise ExamplesError("input.data must be a mapping")
    check_json(data, "input.data")
    if _texts(output, "warnings"):
        raise ExamplesError("output.warnings cannot be checked: format_command() has none")
    errors = _texts(output, "errors")
    if not errors and "bytes" not in output:
        raise ExamplesError("output needs bytes, or errors the call must fail with")
    return CommandExample(
        description=description_of(item),
        command=_command(data),
        output=None if errors else _bytes(output["bytes"], "output.bytes"),
        error=ANY_ERROR if errors else None,
        error_texts=errors,
    )


def _structure_only(item: dict[Any, Any]) -> None:
    mapping_of(item.get("input"), "input", frozenset({"fPort", "bytes"}))
    description_of(item)


def _command(data: dict[str, Any]) -> CommandInput:
    """The command a downlink encoder's `data` stands for: `command` names it and
    `params` holds its params; without `params`, the other keys are the params."""
    name = data.get("command", DEFAULT_COMMAND)
    if not isinstance(name, str) or not name:
        raise ExamplesError("input.data.command must be a non-empty string")
    params = (
        data["params"]
        if "params" in data
        else {key: value for key, value in data.items() if key != "command"}
    )
    if not isinstance(params, dict):
        raise ExamplesError("input.data.params must be a mapping")
    return CommandInput(
        request_id=DEFAULT_REQUEST_ID, device_id=DEFAULT_COMMAND_DEVICE_ID,
        command=name, params_json=encode_params(params),
    )  # fmt: skip


def _bytes(value: object, where: str) -> bytes:
    if not isinstance(value, list) or not all(
        type(item) is int and 0 <= item <= 255 for item in value
    ):
        raise ExamplesError(f"{where} must be a list of integers 0 to 255")
    return bytes(value)


def _recv_time(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ExamplesError("input.recvTime must be an RFC 3339 time (quote it)")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ExamplesError(f"input.recvTime is not an RFC 3339 time: {value!r}") from None
    if moment.tzinfo is None:
        raise ExamplesError("input.recvTime needs a time zone (Z or +hh:mm)")
    return int(moment.timestamp())


def _texts(mapping: Mapping[Any, Any], key: str) -> tuple[str, ...]:
    value = mapping.get(key) or []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ExamplesError(f"output.{key} must be a list of strings")
    return tuple(value)
