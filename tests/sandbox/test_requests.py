"""Every request value is checked at the gRPC edge: whatever a caller sends, the sandbox
answers (a result, a structured error or INVALID_ARGUMENT) and keeps every worker."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from preservarium.repositories import SQLParserRepository
from preservarium.sandbox.v1 import sandbox_pb2 as pb
from preservarium.sandbox.v1 import sandbox_pb2_grpc as pb_grpc
from preservarium.sandbox_client import SandboxClient, contact_proto
from preservarium_sandbox.server import SandboxServer

from tests.sandbox.conftest import contact, wait_for_version
from tests.sandbox.support import outcome

SOURCE = (
    "def parse(payload, metadata):\n    return {'n': len(payload)}\n"
    "def format_command(command):\n    return str(command['params'])[:100].encode()\n"
)
UNENCODABLE_PARAMS = [
    '{"a": NaN}',
    '{"a": Infinity}',
    '{"a": -Infinity}',
    '{"a": 1e999}',
    '{"a": "\\ud800"}',
    '{"\\udfff": 1}',
    '{"a": ["\\udc80x"]}',
    '{"a":' * 5000 + "1" + "}" * 5000,
    '{"a": ' + "[" * 100 + "]" * 100 + "}",
    json.dumps({"s": "x" * 200_000}),
    "[1, 2]",
    "not json",
]


@pytest.fixture(scope="module")
async def stub(sandbox: SandboxServer) -> AsyncIterator[Any]:
    """A raw stub: the requests here are ones the SDK client would never build."""
    async with grpc.aio.insecure_channel(sandbox.config.listen) as channel:
        yield pb_grpc.ParserSandboxStub(channel)  # type: ignore[no-untyped-call]


@pytest.fixture(scope="module")
async def device_type(client: SandboxClient, parsers: SQLParserRepository) -> str:
    name = f"t{uuid.uuid4().hex[:10]}"
    await parsers.upload(name, SOURCE)
    await wait_for_version(client, name, 1)
    return name


def command(params_json: str, **fields: str) -> pb.Command:
    values = {"request_id": "r1", "device_id": "d1", "command": "set"} | fields
    return pb.Command(params_json=params_json, **values)


async def answered(call: Any, request: Any) -> Any:
    """The answer, or None when the request was refused as INVALID_ARGUMENT."""
    try:
        return await call(request, timeout=5)
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc
        return None


async def assert_still_serving(
    client: SandboxClient, device_type: str, sandbox: SandboxServer
) -> None:
    started = time.perf_counter()
    response = await client.parse(contact(device_type, b"abc"))
    assert outcome(response) == ("ok", {"n": 3})
    assert time.perf_counter() - started < sandbox.config.limits.deadline_s(compiling=True)


@pytest.mark.parametrize("params_json", UNENCODABLE_PARAMS)
async def test_params_that_cannot_travel_are_invalid_argument(
    stub: Any, device_type: str, client: SandboxClient, sandbox: SandboxServer, params_json: str
) -> None:
    # More of them than there are workers and spares: before, each one lost a worker.
    for _ in range(sandbox.config.workers + sandbox.config.spares + 1):
        request = pb.FormatCommandRequest(device_type=device_type, command=command(params_json))
        assert await answered(stub.FormatCommand, request) is None
        parse = pb.ParseRequest(
            contact=contact_proto(contact(device_type)), command=command(params_json)
        )
        assert await answered(stub.Parse, parse) is None
        test = pb.TestParserRequest(source=SOURCE, command=command(params_json))
        assert await answered(stub.TestParser, test) is None
    await assert_still_serving(client, device_type, sandbox)


async def test_oversized_request_fields_are_invalid_argument(
    stub: Any, device_type: str, client: SandboxClient, sandbox: SandboxServer
) -> None:
    limits = sandbox.config.limits
    long = "x" * (limits.max_field_chars + 1)
    contacts = [
        contact(device_type, b"x" * (limits.max_payload_bytes + 1)),
        contact(device_type, path=long),
        contact(device_type, device_id=long),
        contact(device_type, query={long: "v"}),
        contact(device_type, query={str(n): "v" for n in range(limits.max_query_entries + 1)}),
    ]
    for each in contacts:
        request: Any = pb.ParseRequest(contact=contact_proto(each))
        assert await answered(stub.Parse, request) is None
        assert (
            await answered(
                stub.TestParser, pb.TestParserRequest(source=SOURCE, contact=contact_proto(each))
            )
            is None
        )
    request = pb.FormatCommandRequest(device_type=device_type, command=command("{}", command=long))
    assert await answered(stub.FormatCommand, request) is None
    await assert_still_serving(client, device_type, sandbox)


@pytest.mark.parametrize(
    "attributes_json",
    [
        '{"k": "' + "x" * 16 * 1024 + '"}',
        '{"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {}}}}}}}}}',
        "[1]",
        '{"k": NaN}',
        '{"k": "\\ud800"}',
    ],
    ids=["oversized", "deep", "not-object", "nan", "surrogate"],
)
async def test_attributes_that_break_their_bounds_are_invalid_argument(
    stub: Any, device_type: str, client: SandboxClient, sandbox: SandboxServer,
    attributes_json: str,
) -> None:  # fmt: skip
    proto = contact_proto(contact(device_type))
    proto.attributes_json = attributes_json
    assert await answered(stub.Parse, pb.ParseRequest(contact=proto)) is None
    assert (
        await answered(stub.TestParser, pb.TestParserRequest(source=SOURCE, contact=proto)) is None
    )
    with_attributes = command("{}")
    with_attributes.attributes_json = attributes_json
    request = pb.FormatCommandRequest(device_type=device_type, command=with_attributes)
    assert await answered(stub.FormatCommand, request) is None
    await assert_still_serving(client, device_type, sandbox)


# Arbitrary JSON-ish values, serialized loosely (NaN, Infinity, escaped lone surrogates).
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
UTF8_TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
PARAMS_JSON = st.one_of(
    JSONISH.map(json.dumps),
    st.dictionaries(st.text(), JSONISH, max_size=4).map(json.dumps),
    UTF8_TEXT,
    st.integers(1, 3000).map(lambda n: '{"a":' + "[" * n + "]" * n + "}"),
    st.integers(1, 3000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.integers(60_000, 120_000).map(lambda n: json.dumps({"s": "x" * n})),
    st.sampled_from(UNENCODABLE_PARAMS),
)
FIELD = st.one_of(UTF8_TEXT, st.integers(1000, 1100).map(lambda n: "x" * n))
COMMANDS = st.builds(
    pb.Command, request_id=FIELD, device_id=FIELD, command=FIELD, params_json=PARAMS_JSON
)
CONTACTS = st.builds(
    pb.Contact,
    payload=st.one_of(
        st.binary(max_size=64), st.integers(65_000, 66_000).map(lambda n: b"\xff" * n)
    ),
    device_type=FIELD,
    path=FIELD,
    method=FIELD,
    received_at=st.integers(-(2**63), 2**63 - 1),
    query=st.dictionaries(UTF8_TEXT, UTF8_TEXT, max_size=70),
)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    command=COMMANDS,
    contact_=st.none() | CONTACTS,
    identify=st.booleans(),
    format_only=st.booleans(),
)
async def test_arbitrary_requests_are_all_answered(
    stub: Any,
    device_type: str,
    command: pb.Command,
    contact_: pb.Contact | None,
    identify: bool,
    format_only: bool,
) -> None:
    if format_only:
        request: Any = pb.FormatCommandRequest(device_type=device_type, command=command)
        answer = await answered(stub.FormatCommand, request)
    else:
        request = pb.TestParserRequest(source=SOURCE, command=command, identify=identify)
        if contact_ is not None:
            request.contact.CopyFrom(contact_)
        answer = await answered(stub.TestParser, request)
    assert (
        answer is None
        or answer.HasField("result")
        or answer.HasField("error")
        or (answer.HasField("command"))
    )


async def test_the_sandbox_still_serves_after_the_arbitrary_requests(
    client: SandboxClient, device_type: str, sandbox: SandboxServer
) -> None:
    await assert_still_serving(client, device_type, sandbox)
    assert sandbox.pool.idle == sandbox.config.workers + sandbox.config.spares
