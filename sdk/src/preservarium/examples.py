"""Parser examples: test vectors kept with a parser, the way The Things Stack keeps them.

An examples file is a YAML list. Each example has a `description` and is either an
uplink case (`input`, then `output` or `error`) or a command case (`command`, then
`output_hex` or `error`). A file in The Things Stack's device repository codec format
(a mapping with `uplinkDecoder` / `downlinkEncoder` examples) is read too
(`examples_tts`). `load_examples` checks the structure; `run_examples` runs each
example through the sandbox's TestParser and says how the answer differs.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import yaml

from preservarium.attributes import InvalidAttributesError, checked_attributes, encode_attributes
from preservarium.contract.command_requests import encode_params
from preservarium.contract.contact import Contact
from preservarium.contract.kinds import SANDBOX_KINDS
from preservarium.error_text import with_line
from preservarium.errors import PreservariumError
from preservarium.ids import is_device_id
from preservarium.sandbox_answers import ParseAnswer, ScriptError
from preservarium.sandbox_client import CommandInput, SandboxClient
from preservarium.yaml_text import NoAliasLoader

ERROR_KINDS = SANDBOX_KINDS
METHODS = ("GET", "POST", "PUT")
DEFAULT_REQUEST_ID = "test"
DEFAULT_COMMAND_DEVICE_ID = "test-device"
# An expected error of any kind (The Things Stack's examples name messages, not kinds).
ANY_ERROR = "any"
MAX_MISMATCHES = 20

_UPLINK_KEYS = frozenset({"description", "input", "output", "error"})
_COMMAND_KEYS = frozenset({"description", "command", "output_hex", "error"})
_INPUT_KEYS = frozenset(
    {"path", "payload_hex", "payload_b64", "confirmable", "method", "device_id", "query"}
    | {"received_at"}  # not in The Things Stack's format: makes time-dependent output testable
    | {"attributes"}  # the device's attributes (metadata["attributes"])
)
_OUTPUT_KEYS = frozenset({"device_id", "data", "reply_hex", "warnings"})
_COMMAND_SPEC_KEYS = frozenset({"command", "params", "request_id", "device_id", "attributes"})


class ExamplesError(PreservariumError):
    """An examples file (or a command given as JSON) is malformed; the message says where."""


@dataclass(frozen=True, slots=True)
class UplinkExample:
    """An uplink case: one device contact and what parsing it must give.

    `sent` is the contact but for what is known only when the example runs: its device
    type (the parser's under test; "" until then) and, unless `received_at` names one,
    its time. Without a device id the contact comes through a route, so identify()
    names the device; with one, it is a registered device's contact. `output` holds
    only the keys the example checks (`reply_hex` as lower-case hex, or None for no
    reply).
    """

    description: str
    sent: Contact
    # Unix seconds; None for the time the example runs.
    received_at: int | None = None
    output: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    # Texts the error message must contain (each), when an error is expected.
    error_texts: tuple[str, ...] = ()

    def contact(self, device_type: str) -> Contact:
        """The contact as the sandbox receives it (received now unless the example says)."""
        received_at = datetime.now(UTC)
        if self.received_at is not None:
            received_at = datetime.fromtimestamp(self.received_at, UTC)
        return replace(self.sent, device_type=device_type, received_at=received_at)


@dataclass(frozen=True, slots=True)
class CommandExample:
    """A command case: one command request and the bytes format_command() must give."""

    description: str
    command: CommandInput
    output: bytes | None = None
    error: str | None = None
    error_texts: tuple[str, ...] = ()


Example = UplinkExample | CommandExample


@dataclass(frozen=True, slots=True)
class ExampleResult:
    """How one example fared: no mismatches means it passed."""

    index: int
    description: str
    mismatches: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the sandbox answered what the example expects."""
        return not self.mismatches

    @property
    def mismatch(self) -> str | None:
        """The mismatches on one line, or None when the example passed."""
        return "; ".join(self.mismatches) if self.mismatches else None


class _Loader(NoAliasLoader):
    """SafeLoader without aliases and without implicit timestamps: examples compare with
    JSON, which has none."""


_Loader.yaml_implicit_resolvers = {
    first: [item for item in resolvers if item[0] != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_examples(text: str) -> list[Example]:
    """Parse and check an examples file; raise ExamplesError naming the example and problem."""
    try:
        document = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise ExamplesError(f"examples are not valid YAML: {_yaml_reason(exc)}") from None
    if isinstance(document, dict):
        from preservarium.examples_tts import codec_examples, is_codec_document

        if is_codec_document(document):
            return codec_examples(document)
    if not isinstance(document, list):
        raise ExamplesError(
            "examples must be a YAML list of examples (or a device repository codec file "
            f"with uplinkDecoder / downlinkEncoder examples), not {_type_name(document)}"
        )
    return [_example(index, item) for index, item in enumerate(document, start=1)]


def command_input(spec: object, *, device_id: str | None = None) -> CommandInput:
    """A command request from `{command, params?, request_id?, device_id?}`.

    `device_id` is the default for a spec that names none.
    """
    mapping = _mapping(spec, "command", _COMMAND_SPEC_KEYS)
    name = mapping.get("command")
    if not isinstance(name, str) or not name:
        raise ExamplesError("command.command must be a non-empty string (the command name)")
    params = mapping.get("params", {})
    if not isinstance(params, dict):
        raise ExamplesError(f"command.params must be a mapping, not {_type_name(params)}")
    _check_json(params, "command.params")
    attributes = _attributes(mapping, "command.")
    return CommandInput(
        request_id=_string(mapping, "request_id", DEFAULT_REQUEST_ID, "command."),
        device_id=_string(mapping, "device_id", device_id or DEFAULT_COMMAND_DEVICE_ID, "command."),
        command=name,
        params_json=encode_params(params),
        attributes_json=encode_attributes(attributes) if attributes else "",
    )


async def run_examples(
    client: SandboxClient, source: str, examples: Sequence[Example], device_type: str
) -> list[ExampleResult]:
    """Run every example through TestParser (unsaved `source`), in order."""
    results: list[ExampleResult] = []
    for index, example in enumerate(examples, start=1):
        if isinstance(example, UplinkExample):
            trial = await client.test_parser(
                source,
                contact=example.contact(device_type),
                identify=example.sent.device_id is None,
            )
            found = _uplink_mismatches(example, trial.answer)
        else:
            trial = await client.test_parser(source, command=example.command)
            found = _command_mismatches(example, trial.answer)
        results.append(ExampleResult(index, example.description, _capped(found)))
    return results


# Loading


def _example(index: int, item: object) -> Example:
    where = f"example {index}"
    if isinstance(item, dict) and isinstance(item.get("description"), str):
        where = f"example {index} ({item['description']!r})"
    try:
        if not isinstance(item, dict):
            raise ExamplesError(f"must be a mapping, not {_type_name(item)}")
        if "input" in item and "command" in item:
            raise ExamplesError("has both input and command; an example is one or the other")
        if "input" in item:
            return _uplink_example(item)
        if "command" in item:
            return _command_example(item)
        raise ExamplesError("needs input (an uplink case) or command (a command case)")
    except ExamplesError as exc:
        raise ExamplesError(f"{where}: {exc}") from None


def _uplink_example(item: dict[Any, Any]) -> UplinkExample:
    _mapping(item, "example", _UPLINK_KEYS)
    error = _expected_error(item, "output")
    spec = _mapping(item["input"], "input", _INPUT_KEYS)
    device_id = spec.get("device_id")
    if device_id is not None and (not isinstance(device_id, str) or not is_device_id(device_id)):
        raise ExamplesError("input.device_id must be 1 to 64 characters of A-Z a-z 0-9 . _ : -")
    confirmable = spec.get("confirmable", True)
    if not isinstance(confirmable, bool):
        raise ExamplesError("input.confirmable must be true or false")
    attributes = _attributes(spec, "input.")
    if attributes and device_id is None:
        raise ExamplesError(
            "input.attributes needs input.device_id: on a route the device is not known "
            "before identify() names it"
        )
    sent = Contact(
        payload=_payload(spec),
        device_type="",
        device_id=device_id,
        path=_string(spec, "path", "", "input."),
        method=_method(spec),
        confirmable=confirmable,
        query=_query(spec),
        attributes_json=encode_attributes(attributes) if attributes else "",
    )
    return UplinkExample(
        description=description_of(item),
        sent=sent,
        received_at=_received_at(spec),
        output=_uplink_output(item["output"]) if error is None else {},
        error=error,
    )


def _command_example(item: dict[Any, Any]) -> CommandExample:
    _mapping(item, "example", _COMMAND_KEYS)
    error = _expected_error(item, "output_hex")
    return CommandExample(
        description=description_of(item),
        command=command_input(item["command"]),
        output=None if error is not None else _hex(item["output_hex"], "output_hex"),
        error=error,
    )


def description_of(item: Mapping[Any, Any]) -> str:
    """An example's description (ExamplesError unless a non-empty string)."""
    description = item.get("description")
    if not isinstance(description, str) or not description.strip():
        raise ExamplesError("needs a description (a non-empty string)")
    return description


def _expected_error(item: Mapping[Any, Any], output_key: str) -> str | None:
    """The expected error kind, after checking there is exactly one expectation."""
    if output_key in item and "error" in item:
        raise ExamplesError(f"has both {output_key} and error; expect one or the other")
    if output_key in item:
        return None
    if "error" not in item:
        raise ExamplesError(f"needs {output_key} or error (the expected error kind)")
    kind = item["error"]
    if kind not in ERROR_KINDS:
        raise ExamplesError(f"error must be one of {', '.join(sorted(ERROR_KINDS))}, not {kind!r}")
    return str(kind)


def _uplink_output(value: object) -> dict[str, Any]:
    output = dict(_mapping(value, "output", _OUTPUT_KEYS))
    if "device_id" in output and not isinstance(output["device_id"], str | None):
        raise ExamplesError("output.device_id must be a string (quote it)")
    if "data" in output:
        if not isinstance(output["data"], dict):
            raise ExamplesError(f"output.data must be a mapping, not {_type_name(output['data'])}")
        _check_json(output["data"], "output.data")
    if output.get("reply_hex") is not None:
        output["reply_hex"] = _hex(output["reply_hex"], "output.reply_hex").hex()
    if "warnings" in output:
        warnings = output["warnings"]
        if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
            raise ExamplesError("output.warnings must be a list of strings")
    return output


def _payload(spec: Mapping[Any, Any]) -> bytes:
    if "payload_hex" in spec and "payload_b64" in spec:
        raise ExamplesError("input has both payload_hex and payload_b64; give one")
    if "payload_hex" in spec:
        return _hex(spec["payload_hex"], "input.payload_hex")
    if "payload_b64" not in spec:
        raise ExamplesError("input needs payload_hex or payload_b64")
    value = spec["payload_b64"]
    if not isinstance(value, str):
        raise ExamplesError("input.payload_b64 must be a string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ExamplesError("input.payload_b64 is not valid base64") from None


def _method(spec: Mapping[Any, Any]) -> str:
    method = spec.get("method", "POST")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise ExamplesError(f"input.method must be one of {', '.join(METHODS)}, not {method!r}")
    return method.upper()


def _query(spec: Mapping[Any, Any]) -> dict[str, str]:
    query = spec.get("query", {})
    if not isinstance(query, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in query.items()
    ):
        raise ExamplesError("input.query must map strings to strings (quote numbers)")
    return query


def _attributes(spec: Mapping[Any, Any], prefix: str) -> dict[str, Any]:
    """The device's attributes an example gives (bounded as the registry bounds them)."""
    try:
        return checked_attributes(spec.get("attributes", {}))
    except InvalidAttributesError as exc:
        raise ExamplesError(f"{prefix}attributes: {exc}") from None


def _received_at(spec: Mapping[Any, Any]) -> int | None:
    value = spec.get("received_at")
    if value is not None and (type(value) is not int or value < 0):
        raise ExamplesError("input.received_at must be Unix seconds (a non-negative integer)")
    return value


def mapping_of(value: object, name: str, allowed: frozenset[str]) -> dict[Any, Any]:
    """`value` as a mapping whose keys are all `allowed` (ExamplesError naming `name`)."""
    return _mapping(value, name, allowed)


def _mapping(value: object, name: str, allowed: frozenset[str]) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise ExamplesError(f"{name} must be a mapping, not {_type_name(value)}")
    unknown = [key for key in value if key not in allowed]
    if unknown:
        raise ExamplesError(
            f"{name} has unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}"
        )
    return value


def _string(mapping: Mapping[Any, Any], key: str, default: str, prefix: str) -> str:
    value = mapping.get(key, default)
    if not isinstance(value, str):
        raise ExamplesError(f"{prefix}{key} must be a string (quote it), not {value!r}")
    return value


def _hex(value: object, name: str) -> bytes:
    if not isinstance(value, str):
        raise ExamplesError(f"{name} must be a quoted string of hex digits, not {value!r}")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ExamplesError(f"{name} is not hex: {value!r}") from None


def check_json(value: object, where: str) -> None:
    """Refuse what a JSON document cannot hold, naming `where` (ExamplesError)."""
    _check_json(value, where)


def _check_json(value: object, where: str) -> None:
    """Refuse what a JSON document cannot hold (non-string keys, NaN, dates...)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ExamplesError(f"{where} has a non-string key {key!r} (quote it)")
            _check_json(item, _child(where, key))
    elif isinstance(value, list):
        for position, item in enumerate(value):
            _check_json(item, f"{where}[{position}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ExamplesError(f"{where} is {value}, which JSON cannot hold")
    elif not isinstance(value, str | int | float | bool | None):
        raise ExamplesError(f"{where} is a {_type_name(value)}, which JSON cannot hold")


def _yaml_reason(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        return f"{exc.problem} at line {exc.problem_mark.line + 1}"
    return str(exc).replace("\n", " ")


def _type_name(value: object) -> str:
    return {dict: "a mapping", list: "a list", type(None): "empty"}.get(
        type(value), f"a {type(value).__name__}"
    )


# Comparing


def _uplink_mismatches(example: UplinkExample, answer: ParseAnswer) -> list[str]:
    found = _error_mismatches(example.error, answer.error, example.error_texts)
    if found is not None:
        return found
    got: dict[str, Any] = {
        "device_id": answer.device_id,
        "data": json.loads(answer.data_json) if answer.data_json else None,
        "reply_hex": None if answer.reply is None else answer.reply.hex(),
        "warnings": list(answer.warnings),
    }
    return [
        mismatch
        for key, expected in example.output.items()
        for mismatch in _differences(expected, got[key], key)
    ]


def _command_mismatches(example: CommandExample, answer: ParseAnswer) -> list[str]:
    command = answer.command
    error = answer.error
    if error is None and command is not None:
        error = command.error
    found = _error_mismatches(example.error, error, example.error_texts)
    if found is not None:
        return found
    got = (b"" if command is None else command.payload or b"").hex()
    expected = (example.output or b"").hex()
    return [] if got == expected else [f"output_hex: expected {expected}, got {got}"]


def _error_mismatches(
    expected: str | None, error: ScriptError | None, texts: Sequence[str] = ()
) -> list[str] | None:
    """Mismatches in the error part, or None when both sides succeeded (compare outputs)."""
    if error is None:
        if expected is None:
            return None
        return [f"expected {'an error' if expected == ANY_ERROR else 'error ' + expected}, "
                "got a result"]  # fmt: skip
    kind = error.kind
    if kind == expected or expected == ANY_ERROR:
        return [
            f"expected the error to say {_show(text)}, got {_show(error.message)}"
            for text in texts
            if text not in error.message
        ]
    wanted = "a result" if expected is None else f"error {expected}"
    # with_line names the line once: the sandbox's messages often start "line N: ".
    return [f"expected {wanted}, got error {with_line(kind, error.message, error.line)}"]


def _differences(expected: Any, got: Any, where: str) -> Iterator[str]:
    """Where `got` differs from `expected`, deep; numbers compare by value (1 == 1.0)."""
    if isinstance(expected, dict) and isinstance(got, dict):
        for key, value in expected.items():
            if key in got:
                yield from _differences(value, got[key], _child(where, key))
            else:
                yield f"{_child(where, key)}: missing, expected {_show(value)}"
        for key in sorted(got.keys() - expected.keys()):
            yield f"{_child(where, key)}: not expected, got {_show(got[key])}"
    elif isinstance(expected, list) and isinstance(got, list):
        if len(expected) != len(got):
            yield f"{where}: expected {len(expected)} items, got {len(got)}"
        for position, (left, right) in enumerate(zip(expected, got, strict=False)):
            yield from _differences(left, right, f"{where}[{position}]")
    elif not _same_scalar(expected, got):
        yield f"{where}: expected {_show(expected)}, got {_show(got)}"


def _same_scalar(expected: Any, got: Any) -> bool:
    def number(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    if number(expected) and number(got):
        return bool(expected == got)
    return type(expected) is type(got) and bool(expected == got)


def _child(where: str, key: str) -> str:
    return f"{where}.{key}" if key.isidentifier() else f"{where}[{json.dumps(key)}]"


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def _capped(mismatches: list[str]) -> tuple[str, ...]:
    if len(mismatches) <= MAX_MISMATCHES:
        return tuple(mismatches)
    extra = len(mismatches) - MAX_MISMATCHES
    return (*mismatches[:MAX_MISMATCHES], f"... and {extra} more")
