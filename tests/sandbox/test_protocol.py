"""Worker frames and the parent's reading of them (unit level): nothing a compromised
worker sends is taken on trust."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from preservarium.contract.kinds import ErrorKind
from preservarium.sandbox.v1 import sandbox_pb2 as pb
from preservarium_sandbox.engine.result import CommandResult, ContactResult, Identified, JobResult
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


def _read(result: JobResult, **worker: Any) -> Answer | Compiled:
    """`result` through the worker's encoder and back through the parent's reader."""
    fields = {"recycle": False, "cpu_s": 1, "compiled": False, "worker_ms": 0.5} | worker
    return worker_frame(decode_frame(encode_answer(result, **fields)[HEADER.size :]))


def test_an_answers_bytes_travel_as_its_blob_never_in_its_json() -> None:
    sent = JobResult(
        ok=True,
        contact=ContactResult("d1", None, '{"t":1}', b"\x00\xff"),
        command=CommandResult(b"\x01\x02"),
    )
    frame = encode_answer(sent, recycle=False, cpu_s=1, compiled=True, worker_ms=0.5)
    assert b"\x00\xff\x01\x02" in frame and b"_b64" not in frame
    answer = _read(sent, compiled=True)
    assert answer == Answer(
        ok=True, compiled=True, cpu_s=1.0, device_id="d1", warnings=[], command={},
        document=b'{"t":1}', reply=b"\x00\xff", command_payload=b"\x01\x02",
    )  # fmt: skip
    assert isinstance(answer, Answer)
    outcome = read_answer(answer, limits=Limits(), has_contact=True)
    assert outcome.failure is None and outcome.reply == b"\x00\xff"
    assert outcome.command is not None and outcome.command.payload == b"\x01\x02"


def test_an_answer_without_a_reply_has_none() -> None:
    answer = _read(JobResult(ok=True, contact=ContactResult("d1", None, "{}")))
    assert isinstance(answer, Answer) and answer.reply is None and answer.command_payload is None
    assert read_answer(answer, limits=Limits(), has_contact=True).reply is None


ERROR = {"kind": "runtime_error", "message": "line 2: ValueError: no", "line": 2}
# A job's result, and the parent's reading of its answer frame (worker fields as _read's).
ROUND_TRIPS: dict[str, tuple[JobResult, Answer]] = {
    "ok": (
        JobResult(ok=True, contact=ContactResult("d1", "tok", '{"n":1}'), warnings=("w",),
                  printed="hi\n"),
        Answer(ok=True, cpu_s=1.0, device_id="d1", token="tok", warnings=["w"], printed="hi\n",
               document=b'{"n":1}'),
    ),
    "error": (
        JobResult(ok=False, error=ERROR, printed="x\n"),
        Answer(cpu_s=1.0, error=ERROR, warnings=[], printed="x\n"),
    ),
    "reply": (
        JobResult(ok=True, contact=ContactResult(None, None, "{}", b"\x00\xff\n")),
        Answer(ok=True, cpu_s=1.0, warnings=[], document=b"{}", reply=b"\x00\xff\n"),
    ),
    "command": (
        JobResult(ok=True, command=CommandResult(b"\xfe\x01")),
        Answer(ok=True, cpu_s=1.0, warnings=[], command={}, command_payload=b"\xfe\x01"),
    ),
    "command_error": (
        JobResult(ok=True, contact=ContactResult("d1", None, "{}"),
                  command=CommandResult(error=ERROR)),
        Answer(ok=True, cpu_s=1.0, device_id="d1", warnings=[], command={"error": ERROR},
               document=b"{}"),
    ),
    "identified": (
        JobResult(ok=False, error=ERROR, identified=Identified("dev9")),
        Answer(cpu_s=1.0, error=ERROR, warnings=[], identified={"device_id": "dev9"}),
    ),
    "identified_with_token": (
        JobResult(ok=False, error=ERROR, identified=Identified("dev9", None, token_found=True)),
        Answer(cpu_s=1.0, error=ERROR, warnings=[],
               identified={"device_id": "dev9", "token": None}),
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(ROUND_TRIPS))
def test_a_job_result_encoded_by_the_worker_reads_back_as_its_answer(name: str) -> None:
    result, expected = ROUND_TRIPS[name]
    assert _read(result) == expected


def test_the_workers_own_fields_read_back_as_the_pool_acts_on_them() -> None:
    answer = _read(JobResult(ok=False), need_source=True, recycle=True, cpu_s=2.5)
    assert answer == Answer(need_source=True, recycle=True, cpu_s=2.5)
    answer = _read(JobResult(ok=True, contact=ContactResult(None, None, "{}")), compiled=True)
    assert isinstance(answer, Answer) and answer.compiled and not answer.recycle


def test_an_answer_frame_is_exactly_what_the_worker_has_always_sent() -> None:
    # The parent's reader is older than the typed result: the bytes on the pipe must not
    # change. What the worker sent for an identified failure before the result was typed.
    result = JobResult(
        ok=False,
        error={"kind": "runtime_error", "message": "line 7: ValueError: no", "line": 7},
        identified=Identified("dev9", "tok", token_found=True),
        printed="z\n",
    )
    frame = encode_answer(result, recycle=False, cpu_s=1.5, compiled=True, worker_ms=2.0)
    assert frame == (
        b'\x00\x00\x00\xf2\x00\x00\x00\xee{"ok":false,"error":{"kind":"runtime_error",'
        b'"message":"line 7: ValueError: no","line":7},"identified":{"device_id":"dev9",'
        b'"token":"tok"},"printed":"z\\n","recycle":false,"cpu_s":1.5,"compiled":true,'
        b'"worker_ms":2.0,"parts":[null,null,null]}'
    )
    ok = JobResult(
        ok=True,
        contact=ContactResult("d1", None, "{}"),
        command=CommandResult(b"\x01\x02"),
        warnings=("c",),
    )
    frame = encode_answer(ok, recycle=False, cpu_s=1.5, compiled=False, worker_ms=2.0)
    assert frame == (
        b'\x00\x00\x00\x9f\x00\x00\x00\x97{"ok":true,"device_id":"d1","token":null,'
        b'"command":{},"warnings":["c"],"recycle":false,"cpu_s":1.5,"compiled":false,'
        b'"worker_ms":2.0,"parts":[2,null,2]}{}\x01\x02'
    )


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
