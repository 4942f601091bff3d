"""Frames between the parent and a worker.

A frame is a 4-byte big-endian length N, a 4-byte length M, M bytes of UTF-8 JSON (an
object), then N - 4 - M bytes of blob: opaque bytes that travel without JSON escaping or
base64 (a job's contact payloads; an answer's parse() document, reply and format_command
bytes). A reader hands the blob over under the key `blob`, replacing whatever the JSON
said under that key.

JSON, never pickle: the parent must be able to read a compromised worker's answer
without running anything the worker chose.

A job frame carries a batch: the parser version (`sha`, and `source` when the worker may
not have it) and `jobs`, each with the `size` of its payload; the payloads follow one
after another as the blob. The worker answers each job with a frame of its own, in
order, as soon as it is done: the parent holds each job to its own deadline from the
previous answer, and when a worker is killed mid-batch it knows exactly which jobs were
answered and re-runs the rest elsewhere.

The worker's frames, as the parent reads them, are typed values: `Hello` (the first
frame: ready or not, and the hardening report), `Compiled` (a stage frame: the job's
first compile is done) and `Answer` (one job's answer). An answer's blob holds its
document, reply and command payload one after another, their sizes in `parts` (null for
one the answer does not have).
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from preservarium_sandbox.engine.result import JobResult
from preservarium_sandbox.limits import MAX_FRAME_BYTES

if TYPE_CHECKING:  # the parent's side only: a worker starts 20 ms sooner without asyncio
    import asyncio

HEADER = struct.Struct(">I")
META = struct.Struct(">I")
# The absolute ceiling; the parent holds each direction to the tighter cap its limits give.
MAX_FRAME = MAX_FRAME_BYTES


class ProtocolError(Exception):
    """A frame that breaks the protocol: the peer is killed, never trusted."""


def encode_frame(message: dict[str, Any], blob: bytes = b"", max_size: int = MAX_FRAME) -> bytes:
    """One frame for `message` (and its blob).

    Raises ValueError (NaN, a lone surrogate), TypeError, RecursionError or ProtocolError
    (over `max_size`) for a message that cannot travel.
    """
    body = json.dumps(message, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    meta = body.encode("utf-8")
    size = META.size + len(meta) + len(blob)
    if size > max_size:
        raise ProtocolError(f"frame of {size} bytes is over {max_size}")
    return b"".join((HEADER.pack(size), META.pack(len(meta)), meta, blob))


def encode_json(value: Any) -> bytes:
    """`value` as the compact UTF-8 JSON frames carry (raises as encode_frame does)."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.encode("utf-8")


def encode_batch(
    sha: str, source: str | None, jobs: list[tuple[bytes, bytes]], max_size: int = MAX_FRAME
) -> bytes:
    """One job frame for a batch of one parser version's jobs.

    `jobs` holds each job's encoded JSON object (with its payload's `size`) and payload.
    """
    meta = b"".join((
        b'{"sha":', encode_json(sha), b',"source":', encode_json(source),
        b',"jobs":[', b",".join(item for item, _ in jobs), b"]}",
    ))  # fmt: skip
    blob = b"".join(payload for _, payload in jobs)
    size = META.size + len(meta) + len(blob)
    if size > max_size:
        raise ProtocolError(f"frame of {size} bytes is over {max_size}")
    return b"".join((HEADER.pack(size), META.pack(len(meta)), meta, blob))


def split_batch(frame: dict[str, Any]) -> list[dict[str, Any]]:
    """The jobs of a decoded job frame, each with its parser version and its payload as
    `blob` (what the worker runs one at a time)."""
    jobs, blob = frame.get("jobs"), frame["blob"]
    if type(jobs) is not list or not jobs:
        raise ProtocolError("a job frame carries no jobs")
    split: list[dict[str, Any]] = []
    offset = 0
    for job in jobs:
        size = job.get("size") if type(job) is dict else None
        if type(size) is not int or size < 0 or offset + size > len(blob):
            raise ProtocolError("a job's payload size does not match the frame")
        split.append(job | {"sha": frame.get("sha"), "source": frame.get("source"),
                            "blob": blob[offset : offset + size]})  # fmt: skip
        offset += size
    if offset != len(blob):
        raise ProtocolError("the frame carries bytes no job claims")
    return split


def _reject_constant(name: str) -> Any:
    raise ProtocolError(f"non-finite number {name} in a frame")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ProtocolError("an object in the JSON repeats a key")
    return result


def decode_body(data: bytes | str, *, unique_keys: bool = False) -> dict[str, Any]:
    """Parse a frame body; anything but a JSON object is a protocol error.

    `unique_keys` refuses an object that repeats a key: json.loads keeps the last value,
    so a check of the decoded value would not see what the text itself says first.
    """
    try:
        message = json.loads(
            data,
            parse_constant=_reject_constant,
            object_pairs_hook=_unique_keys if unique_keys else None,
        )
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"frame is not JSON: {exc}") from None
    if type(message) is not dict:
        raise ProtocolError("frame is not a JSON object")
    return message


def decode_frame(body: bytes) -> dict[str, Any]:
    """A frame's message, with its blob under `blob`."""
    if len(body) < META.size:
        raise ProtocolError("frame is shorter than its header")
    (meta_size,) = META.unpack_from(body)
    end = META.size + meta_size
    if end > len(body):
        raise ProtocolError("frame's JSON part runs past its end")
    message = decode_body(body[META.size : end])
    message["blob"] = body[end:]
    return message


# Worker side: blocking reads and writes on raw descriptors.


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = os.read(fd, remaining)
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame_blocking(fd: int) -> dict[str, Any] | None:
    """The next frame on `fd`, or None at end of file."""
    header = _read_exactly(fd, HEADER.size)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    if size > MAX_FRAME:
        raise ProtocolError(f"frame of {size} bytes is over {MAX_FRAME}")
    body = _read_exactly(fd, size)
    if body is None:
        return None
    return decode_frame(body)


def write_frame_blocking(fd: int, message: dict[str, Any]) -> None:
    """Write one frame (with no blob) to `fd`."""
    write_bytes_blocking(fd, encode_frame(message))


def write_bytes_blocking(fd: int, frame: bytes) -> None:
    """Write an encoded frame to `fd`."""
    data = memoryview(frame)
    while data:
        written = os.write(fd, data)
        data = data[written:]


# Parent side: asyncio streams.


async def read_frame(reader: asyncio.StreamReader, max_size: int = MAX_FRAME) -> dict[str, Any]:
    """The next frame from a worker; EOF and oversize frames are protocol errors."""
    import asyncio  # loaded already in the parent, which runs on it

    try:
        header = await reader.readexactly(HEADER.size)
        (size,) = HEADER.unpack(header)
        if size > max_size:
            raise ProtocolError(f"frame of {size} bytes is over {max_size}")
        body = await reader.readexactly(size)
    except asyncio.IncompleteReadError as exc:
        raise ProtocolError("worker closed its pipe") from exc
    return decode_frame(body)


# The worker's frames as the parent reads them.


@dataclass(frozen=True, slots=True)
class Hello:
    """A worker's first frame: whether it sealed itself and is ready, and how."""

    ready: bool
    error: str = ""
    hardening: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Compiled:
    """A stage frame: the job's first compile is done; its call starts now."""


@dataclass(frozen=True, slots=True)
class Answer:
    """One job's answer, as a worker sent it.

    What the pool acts on (`need_source`, `recycle`, `compiled`, `cpu_s`) is read here by
    exact type: any other value reads as absent. The result is still the worker's word
    (`object`, not trusted): preservarium_sandbox.outcome.read_answer checks every field
    of it again. The bytes came as the frame's blob, never in the JSON.
    """

    ok: bool = False
    need_source: bool = False
    recycle: bool = False
    compiled: bool = False
    cpu_s: float | None = None
    error: object = None
    device_id: object = None
    token: object = None
    warnings: object = field(default_factory=list)
    printed: object = None
    identified: object = None
    command: object = None  # {"error": ...} or {} (its payload is `command_payload`)
    document: bytes | None = None  # parse()'s JSON document
    reply: bytes | None = None
    command_payload: bytes | None = None


def encode_answer(
    result: JobResult,
    *,
    need_source: bool = False,
    recycle: bool,
    cpu_s: float,
    compiled: bool,
    worker_ms: float,
) -> bytes:
    """The frame of the worker's answer to one job: engine.runner.run_job's result (or
    the worker's own, for a compile failure, a deadline or a missing source) and the
    worker's fields. The document, reply and command payload leave the JSON for the
    blob, their sizes in `parts` (raises as encode_frame does)."""
    message: dict[str, Any] = {"ok": result.ok}
    if need_source:
        message["need_source"] = True
    if result.error is not None:
        message["error"] = result.error
    if result.identified is not None:
        found = result.identified
        message["identified"] = (
            {"device_id": found.device_id, "token": found.token}
            if found.token_found
            else {"device_id": found.device_id}
        )
    parts: list[bytes | None] = [None, None, None]
    if result.contact is not None:
        message["device_id"] = result.contact.device_id
        message["token"] = result.contact.token
        parts[0] = result.contact.data_json.encode("utf-8")
        parts[1] = result.contact.reply
    if result.command is not None:
        if result.command.error is not None:
            message["command"] = {"error": result.command.error}
        else:
            message["command"] = {}
            parts[2] = result.command.payload
    if result.ok:
        message["warnings"] = result.warnings
    if result.printed is not None:
        message["printed"] = result.printed
    message["recycle"] = recycle
    message["cpu_s"] = cpu_s
    message["compiled"] = compiled
    message["worker_ms"] = worker_ms
    message["parts"] = [None if part is None else len(part) for part in parts]
    return encode_frame(message, b"".join(part for part in parts if part is not None))


def _flag(message: dict[str, Any], key: str) -> bool:
    return message.get(key) is True


def _parts(message: dict[str, Any]) -> list[bytes | None]:
    """The answer's blob cut at the sizes of its `parts`: they must claim it exactly."""
    sizes, blob = message.get("parts", [None, None, None]), message["blob"]
    if type(sizes) is not list or len(sizes) != 3:
        raise ProtocolError("an answer's parts are not three sizes")
    parts: list[bytes | None] = []
    offset = 0
    for size in sizes:
        if size is None:
            parts.append(None)
            continue
        if type(size) is not int or size < 0 or offset + size > len(blob):
            raise ProtocolError("an answer's part size does not match the frame")
        parts.append(blob[offset : offset + size])
        offset += size
    if offset != len(blob):
        raise ProtocolError("the answer carries bytes no part claims")
    return parts


def worker_frame(message: dict[str, Any]) -> Answer | Compiled:
    """A decoded frame from a worker at work, typed (ProtocolError if its blob is not
    what its parts say)."""
    if message.get("stage") == "compiled":
        return Compiled()
    document, reply, payload = _parts(message)
    cpu = message.get("cpu_s")
    return Answer(
        ok=_flag(message, "ok"),
        need_source=_flag(message, "need_source"),
        recycle=_flag(message, "recycle"),
        compiled=_flag(message, "compiled"),
        cpu_s=float(cpu) if type(cpu) is float or type(cpu) is int else None,
        error=message.get("error"),
        device_id=message.get("device_id"),
        token=message.get("token"),
        warnings=message.get("warnings", []),
        printed=message.get("printed"),
        identified=message.get("identified"),
        command=message.get("command"),
        document=document,
        reply=reply,
        command_payload=payload,
    )


async def read_worker_frame(reader: asyncio.StreamReader, max_size: int) -> Answer | Compiled:
    """The next answer (or stage) frame from a worker."""
    return worker_frame(await read_frame(reader, max_size))


async def read_hello(reader: asyncio.StreamReader) -> Hello:
    """A worker's first frame."""
    message = await read_frame(reader)
    hardening = message.get("hardening")
    error = message.get("error")
    return Hello(
        ready=message.get("ready") is True,
        error=error if type(error) is str else "",
        hardening=dict(hardening) if type(hardening) is dict else {},
    )
