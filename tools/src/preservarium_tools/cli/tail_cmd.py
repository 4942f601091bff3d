"""`preservarium tail raw|parsed|failed|status`: follow a topic, human-readable by default.

The consumer has no group: it reads every partition and commits nothing, so it never
takes records away from anyone else.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import typer
from preservarium.contract import topics
from preservarium.contract.encoding import Record, decode_record
from preservarium.error_text import without_line
from preservarium.ids import is_device_id
from preservarium.text import STEERING, terminal_text

from preservarium_tools.cli.command_cmds import (
    CONNECT_TIMEOUT_S,
    ensure_topic,
    note,
    refuse,
    require_aiokafka,
    run_kafka,
    stop_quietly,
)
from preservarium_tools.cli.common import settings
from preservarium_tools.cli.tail_backlog import backlog

PRINTED_SHOWN = 120  # characters of a record's `printed` shown on its line


class Stream(StrEnum):
    """The topics `tail` follows, by their short names."""

    raw = "raw"
    parsed = "parsed"
    failed = "failed"
    status = "status"


SUFFIXES = {
    Stream.raw: topics.RAW,
    Stream.parsed: topics.PARSED,
    Stream.failed: topics.FAILED,
    Stream.status: topics.COMMAND_STATUS,
}


@dataclass(frozen=True, slots=True)
class TailOptions:
    """What to show and when to stop."""

    stream: Stream
    as_json: bool = False
    from_beginning: bool = False
    count: int | None = None
    device: str | None = None


def tail(
    stream: Stream = typer.Argument(..., metavar="STREAM", help="raw, parsed, failed or status."),
    as_json: bool = typer.Option(False, "--json", help="Each record as one JSON line."),
    from_beginning: bool = typer.Option(
        False, "--from-beginning", help="Start at the oldest record, not the newest."
    ),
    count: int | None = typer.Option(None, "--count", min=1, metavar="N", help="Stop after N."),
    device: str | None = typer.Option(
        None,
        "--device",
        metavar="ID",
        help="Only records whose key or device_id names this device. A raw record from a "
        "route device names nobody (it is written before identify() runs): follow "
        "parsed or failed for those.",
    ),
) -> None:
    """Follow a topic and print its records until Ctrl-C (or --count N).

    With --from-beginning, the records already there come first, in time order across
    the topic's partitions.
    """
    if device is not None and not is_device_id(device):
        refuse(f"invalid device id {device!r}: use 1 to 64 characters of A-Z a-z 0-9 . _ : -")
    options = TailOptions(stream, as_json, from_beginning, count, device)
    config = settings()
    require_aiokafka()
    topic = config.topic(SUFFIXES[stream])
    try:
        run_kafka(config.kafka_bootstrap, follow(config.kafka_bootstrap, topic, options))
    except KeyboardInterrupt:
        raise SystemExit(0) from None


async def follow(bootstrap: str, topic: str, options: TailOptions) -> None:
    """Print the topic's records as they arrive, until `options.count` were shown."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        client_id="preservarium-tail",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if options.from_beginning else "latest",
        metadata_max_age_ms=5000,
    )
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            await _attach(consumer, bootstrap, topic)
        note(f"following {topic} (Ctrl-C to stop)")
        await _print_records(consumer, options)
    finally:
        await stop_quietly(consumer)


async def _attach(consumer: Any, bootstrap: str, topic: str) -> None:
    # Creating a missing topic first means no record written after this point is missed;
    # resolving every position pins "the end" to now rather than to the first fetch.
    await ensure_topic(bootstrap, topic)
    await consumer.start()  # subscribed without a group: start() assigns every partition
    for partition in consumer.assignment():
        await consumer.position(partition)


async def _print_records(consumer: Any, options: TailOptions) -> None:
    shown = 0
    if options.from_beginning:
        async for message in backlog(consumer):
            if options.count is not None and shown >= options.count:
                return
            shown += _show(message, options)
    while options.count is None or shown < options.count:
        shown += _show(await consumer.getone(), options)


def _show(message: Any, options: TailOptions) -> int:
    """Print one consumed record if it is wanted: 1 when printed, else 0."""
    record = decode_record(message.value)
    if record is None:
        note(
            "skipped a record that is not a JSON object "
            f"(partition {message.partition}, offset {message.offset})"
        )
        return 0
    if options.device is not None and not names_device(record, message.key, options.device):
        return 0
    _emit(render(record, options))
    return 1


def names_device(record: Record, key: bytes | None, device: str) -> bool:
    """True when the record's key or its device_id is `device`."""
    return record.get("device_id") == device or key == device.encode()


def render(record: Record, options: TailOptions) -> str:
    """The line printed for `record`: JSON, or one line for humans. Either way no
    character that steers a terminal is left as is (they are written escaped)."""
    if options.as_json:
        # Outside strings JSON is ASCII, so a \uXXXX escape is always in a string.
        text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        return STEERING.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
    return describe(options.stream, record)


def _emit(line: str) -> None:
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # `preservarium tail ... | head`: the reader left; stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(0) from None


def describe(stream: Stream, record: Record) -> str:
    """One line for humans: time, device id, then what matters for this topic."""
    time_field = "at" if stream is Stream.status else "received_at"
    head = f"{_text(record.get(time_field))}  {_text(record.get('device_id'))}"
    return f"{head}  {_ESSENTIALS[stream](record)}{_replayed(record)}"


def _replayed(record: Record) -> str:
    """`  (replay R of U)` on a result a replay published; "" on an original."""
    stamp = record.get("replay")
    if not isinstance(stamp, dict):
        return ""
    return f"  (replay {_text(stamp.get('id'))} of {_text(stamp.get('of'))})"


def _raw(record: Record) -> str:
    size = _payload_size(record.get("payload_b64"))
    path = record.get("path") or "/"
    return f"{_text(record.get('method'))} {_text(path)}  {size} bytes"


def _parsed(record: Record) -> str:
    parser = record.get("parser")
    name = version = None
    if isinstance(parser, dict):
        name, version = parser.get("name"), parser.get("version")
    data = json.dumps(record.get("data"), ensure_ascii=False, separators=(",", ":"))
    warnings = record.get("warnings")
    extra = ""
    if isinstance(warnings, list) and warnings:
        extra = f"  ({len(warnings)} warning{'' if len(warnings) == 1 else 's'})"
    return f"{_text(name)} v{_text(version)}  {_printable(data)}{extra}{_printed(record)}"


def _failed(record: Record) -> str:
    error = record.get("error")
    error = error if isinstance(error, dict) else {}
    line = error.get("line")
    message = _text(error.get("message"))
    if isinstance(line, int) and not isinstance(line, bool):
        head = f"{_text(error.get('kind'))} at line {line}: {without_line(message, line)}"
    else:
        head = f"{_text(error.get('kind'))}: {message}"
    return head + _printed(record)


def _printed(record: Record) -> str:
    """What the parser print()ed, on the same line (newlines shown as `|`), cut short:
    `--json` has all of it."""
    printed = record.get("printed")
    if not isinstance(printed, str) or not printed:
        return ""
    text = " | ".join(printed.removesuffix("\n").split("\n"))
    cut = text[:PRINTED_SHOWN] + ("..." if len(text) > PRINTED_SHOWN else "")
    return f"  printed: {_printable(cut)}"


def _status(record: Record) -> str:
    reason = record.get("reason")
    why = f": {_text(reason)}" if reason is not None else ""
    return f"{_text(record.get('request_id'))}  {_text(record.get('status'))}{why}"


_ESSENTIALS: dict[Stream, Callable[[Record], str]] = {
    Stream.raw: _raw,
    Stream.parsed: _parsed,
    Stream.failed: _failed,
    Stream.status: _status,
}


def _payload_size(value: Any) -> str:
    if not isinstance(value, str):
        return "?"
    try:
        return str(len(base64.b64decode(value, validate=True)))
    except (binascii.Error, ValueError):
        return "?"


def _text(value: Any) -> str:
    return "-" if value is None else _printable(str(value))


def _printable(text: str) -> str:
    # Records carry device-controlled text: never let it move the cursor, break a line
    # or reorder what is shown.
    return terminal_text(text)
