"""Worker frames and the parent's reading of them (unit level): nothing a compromised
worker sends is taken on trust."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from preservarium.contract.kinds import ErrorKind
from preservarium.sandbox.v1 import sandbox_pb2 as pb
from preservarium_sandbox.limits import MAX_MESSAGE_CHARS, Limits
from preservarium_sandbox.outcome import read_answer
from preservarium_sandbox.pool import Job, WorkerPool
from preservarium_sandbox.quarantine import NotAdmittedError
from preservarium_sandbox.wire import fill_parse_answer
from preservarium_sandbox.worker.protocol import (
    HEADER,
    META,
    Answer,
    Compiled,
    ProtocolError,
    decode_frame,
    encode_answer,
    encode_frame,
    read_frame,
    worker_frame,
)
from preservarium_sandbox.worker_process import JobTimedOut, WorkerDied


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


def _answer(blob: bytes) -> Answer:
    return Answer(ok=True, warnings=[], document=blob)


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
    answer = dataclasses.replace(_answer(b"{}"), warnings=["ok", "bad \ud800 text"])
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
        assert isinstance(answer, Answer) and answer.ok
    finally:
        await pool.stop()


def _read(answer: dict[str, object]) -> Answer | Compiled:
    return worker_frame(decode_frame(encode_answer(answer)[HEADER.size :]))


def test_an_answers_bytes_travel_as_its_blob_never_in_its_json() -> None:
    sent = {"ok": True, "warnings": [], "data_json": '{"t":1}', "reply": b"\x00\xff",
            "command": {"payload": b"\x01\x02"}, "cpu_s": 1, "compiled": True}  # fmt: skip
    frame = encode_answer(sent)
    assert b"\x00\xff\x01\x02" in frame and b"_b64" not in frame
    answer = _read(sent)
    assert answer == Answer(
        ok=True, compiled=True, cpu_s=1.0, warnings=[], command={},
        document=b'{"t":1}', reply=b"\x00\xff", command_payload=b"\x01\x02",
    )  # fmt: skip
    assert isinstance(answer, Answer)
    outcome = read_answer(answer, limits=Limits(), has_contact=True)
    assert outcome.failure is None and outcome.reply == b"\x00\xff"
    assert outcome.command is not None and outcome.command.payload == b"\x01\x02"


def test_an_answer_without_a_reply_has_none() -> None:
    answer = _read({"ok": True, "warnings": [], "data_json": "{}", "reply": None})
    assert isinstance(answer, Answer) and answer.reply is None and answer.command_payload is None
    assert read_answer(answer, limits=Limits(), has_contact=True).reply is None


@pytest.mark.parametrize(
    ("parts", "blob"),
    [([5, None, None], b"abc"), ([1, None, None], b"abc"), ([-1, 1, None], b"a"),
     ([1.0, None, None], b"a"), ([None, None], b""), ("1", b"a"), ([None, None, None], b"a")],
)  # fmt: skip
def test_parts_that_do_not_claim_the_blob_exactly_are_protocol_errors(
    parts: object, blob: bytes
) -> None:
    frame = encode_frame({"ok": True, "parts": parts}, blob)
    with pytest.raises(ProtocolError):
        worker_frame(decode_frame(frame[HEADER.size :]))


def test_control_fields_of_another_type_read_as_absent() -> None:
    message = {"ok": 1, "need_source": "yes", "recycle": 1, "compiled": "true", "cpu_s": "9"}
    answer = worker_frame(decode_frame(encode_frame(message)[HEADER.size :]))
    assert answer == Answer()


def test_the_stage_frame_is_its_own_type() -> None:
    assert worker_frame(decode_frame(encode_frame({"stage": "compiled"})[HEADER.size :])) == (
        Compiled()
    )


def test_a_timed_out_job_is_a_timeout_that_cost_its_worker() -> None:
    outcome = read_answer(JobTimedOut(150), limits=Limits(), has_contact=True)
    assert outcome.failure is not None and outcome.failure.kind is ErrorKind.TIMEOUT
    assert (
        outcome.failure.message
        == "the parser ran past its limit of 150 ms and its worker was killed"
    )
    assert outcome.worker_replaced and not outcome.worker_died


def test_a_dead_worker_is_its_kind_and_costs_the_worker() -> None:
    died = WorkerDied(
        ErrorKind.RUNTIME_ERROR, "the sandbox worker broke the protocol: " + "x" * 900
    )
    outcome = read_answer(died, limits=Limits(), has_contact=True)
    assert outcome.failure is not None and outcome.failure.kind is ErrorKind.RUNTIME_ERROR
    assert len(outcome.failure.message) == MAX_MESSAGE_CHARS
    assert outcome.worker_replaced and outcome.worker_died
