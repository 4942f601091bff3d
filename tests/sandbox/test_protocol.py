"""Worker frames and the parent's reading of them (unit level): nothing a compromised
worker sends is taken on trust."""

from __future__ import annotations

import asyncio

import pytest
from preservarium_sandbox.engine.errors import ErrorKind
from preservarium_sandbox.limits import Limits
from preservarium_sandbox.outcome import read_answer
from preservarium_sandbox.worker.protocol import (
    HEADER,
    META,
    ProtocolError,
    decode_frame,
    encode_frame,
    read_frame,
)


def test_a_frame_carries_its_blob_apart_from_the_json() -> None:
    frame = encode_frame({"ok": True, "n": 1}, b'{"t":"\\u00e9"}\x00\xff')
    (size,) = HEADER.unpack_from(frame)
    assert size == len(frame) - HEADER.size
    message = decode_frame(frame[HEADER.size :])
    assert message == {"ok": True, "n": 1, "blob": b'{"t":"\\u00e9"}\x00\xff'}


def test_the_json_cannot_forge_the_blob() -> None:
    message = decode_frame(encode_frame({"blob": "forged"})[HEADER.size :])
    assert message["blob"] == b""


@pytest.mark.parametrize(
    "body",
    [b"", b"\x00\x00", META.pack(100) + b"{}", META.pack(2) + b"[]", META.pack(3) + b"{x}"],
)
def test_malformed_frames_are_protocol_errors(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_frame(body)


async def test_the_async_reader_enforces_the_size_cap() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(encode_frame({"ok": True}, b"x" * 100))
    reader.feed_eof()
    with pytest.raises(ProtocolError):
        await read_frame(reader, max_size=50)


def _answer(blob: bytes) -> dict[str, object]:
    return {"ok": True, "device_id": None, "warnings": [], "blob": blob}


@pytest.mark.parametrize(
    "blob",
    [b"", b"\xff\xfe{}", "{}".encode("utf-16"), b"[1]", b"{", b'{"a": NaN}', b'{"a": 1e999}',
     b'{"a": ' + b"[" * 40 + b"]" * 40 + b"}", b'{"big": ' + str(2**64).encode() + b"}"],
)  # fmt: skip
def test_a_bad_document_from_a_worker_is_invalid_output(blob: bytes) -> None:
    outcome = read_answer(_answer(blob), limits=Limits(), has_contact=True)
    assert outcome.failure is not None and outcome.failure.kind is ErrorKind.INVALID_OUTPUT


def test_a_good_document_is_passed_on_as_is() -> None:
    blob = '{"t":21.5,"name":"café","n":[1,2]}'.encode()
    outcome = read_answer(_answer(blob), limits=Limits(), has_contact=True)
    assert outcome.failure is None and outcome.data_json == blob


def test_an_oversized_document_is_refused() -> None:
    limits = Limits(max_output_bytes=64)
    blob = b'{"x":"' + b"a" * 100 + b'"}'
    outcome = read_answer(_answer(blob), limits=limits, has_contact=True)
    assert outcome.failure is not None and outcome.failure.kind is ErrorKind.INVALID_OUTPUT
