"""Worker frames and the parent's reading of them (unit level): nothing a compromised
worker sends is taken on trust."""

from __future__ import annotations

import asyncio

import pytest
from preservarium.contract.kinds import ErrorKind
from preservarium.sandbox.v1 import sandbox_pb2 as pb
from preservarium_sandbox.limits import Limits
from preservarium_sandbox.outcome import read_answer
from preservarium_sandbox.pool import Job, NotAdmittedError, WorkerPool
from preservarium_sandbox.wire import fill_parse_answer
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


CONTACT = {"device_id": "d1", "device_type": "t", "path": "", "method": "POST",
           "confirmable": True, "received_at": 0, "query": {}}  # fmt: skip


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


@pytest.mark.parametrize(
    "blob",
    [b'{"t":1e999,"t":1}', b'{"t":' + b"[" * 40 + b"]" * 40 + b',"t":1}',
     b'{"t":99999999999999999999999,"t":1}', b'{"a":{"k":1,"k":2}}'],
)  # fmt: skip
def test_a_document_that_repeats_a_key_is_refused(blob: bytes) -> None:
    """The parent passes the bytes on: the value checked must be all the text says."""
    outcome = read_answer(_answer(blob), limits=Limits(), has_contact=True)
    assert outcome.failure is not None and outcome.failure.kind is ErrorKind.INVALID_OUTPUT


@pytest.mark.parametrize("blob", [b'{"t":"\\ud800"}', b'{"\\udc00":1}', b'{"a":["x","\\ud800y"]}'])
def test_a_document_with_a_lone_surrogate_is_refused(blob: bytes) -> None:
    outcome = read_answer(_answer(blob), limits=Limits(), has_contact=True)
    assert outcome.failure is not None and outcome.failure.kind is ErrorKind.INVALID_OUTPUT


def test_a_surrogate_pair_written_as_escapes_is_text() -> None:
    outcome = read_answer(_answer(b'{"t":"\\ud83d\\ude00"}'), limits=Limits(), has_contact=True)
    assert outcome.failure is None


def test_warnings_from_a_worker_come_out_as_clean_utf8() -> None:
    answer = _answer(b"{}") | {"warnings": ["ok", "bad \ud800 text"]}
    outcome = read_answer(answer, limits=Limits(), has_contact=True)
    assert outcome.failure is None
    assert outcome.warnings == ("ok", "bad ? text")
    response = pb.ParseResponse()
    fill_parse_answer(response, outcome)  # encodes: no UnicodeEncodeError
    assert list(response.result.warnings) == ["ok", "bad ? text"]


async def test_an_admit_check_that_raises_loses_no_worker() -> None:
    pool = WorkerPool(size=1, limits=Limits(timeout_ms=500), spares=0)
    await pool.start()
    try:
        job = Job(sha="0" * 64, source="def parse(payload, metadata):\n    return {}\n",
                  contact=CONTACT, payload=b"x")  # fmt: skip

        def broken() -> bool:
            raise RuntimeError("admit failed")

        with pytest.raises(RuntimeError):
            await pool.run(job, broken)
        with pytest.raises(NotAdmittedError):
            await pool.run(job, lambda: False)
        async with asyncio.timeout(10):
            answer = await pool.run(job, lambda: True)
        assert answer["ok"] is True
    finally:
        await pool.stop()
