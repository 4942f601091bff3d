"""Deeply nested structures end the call with RecursionError, never the worker.

Through the real service: each program builds a structure far deeper than the C stack
allows to walk (`t = (t,)` three hundred thousand times) and hashes, prints, compares
or serialises it. The answer is runtime_error (RecursionError), no worker dies, and
the next call is answered by the same workers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from preservarium.sandbox_client import SandboxClient
from preservarium_sandbox.engine.nesting import ParserTuple, checked
from preservarium_sandbox.limits import MAX_TUPLE_DEPTH, Limits
from preservarium_sandbox.server import SandboxServer

from tests.sandbox.conftest import contact, sandbox_config
from tests.sandbox.support import outcome

DEPTH = 300_000
PROGRAM = """
import json
import re

def pack(*items):
    return items

def parse(payload, metadata):
    one = FIRST
    two = FIRST
    for i in range(DEPTH):
        one = STEP_ONE
        two = STEP_TWO
    return {"result": str(OPERATION)}
"""
# (the empty structure, one step deeper from X, what is done with the deep `one`)
FAMILY = {
    "tuple_hash": ("()", "(X,)", "hash(one)"),
    "tuple_dict_key": ("()", "(X,)", "len({one: 1})"),
    "tuple_set_member": ("()", "(X, 1)", "one in {two}"),
    "tuple_varargs_hash": ("()", "pack(X)", "hash(one)"),
    "tuple_lambda_varargs": ("()", "(lambda *a: a)(X)", "hash(one)"),
    "tuple_builtin_hash": ("()", "tuple([X])", "hash(one)"),
    "tuple_zip_hash": ("()", "next(zip([X]))", "hash(one)"),
    "tuple_enumerate_hash": ("()", "next(enumerate([X]))", "hash(one)"),
    "tuple_items_hash": ("()", "next(iter({0: X}.items()))", "hash(one)"),
    "tuple_popitem_hash": ("()", "{0: X}.popitem()", "hash(one)"),
    "tuple_exception_args_hash": ("()", "ValueError(X).args", "hash(one)"),
    "tuple_match_groups_hash": ("()", "re.match('(a)?', '').groups(X)", "hash(one)"),
    "list_repr": ("[]", "[X]", "repr(one)"),
    "list_str": ("[]", "[X]", "str(one)"),
    "list_fstring": ("[]", "[X]", "f'{one}'"),
    "dict_equality": ("{}", "{'a': X}", "one == two"),
    "list_ordering": ("[]", "[X]", "sorted([one, two])"),
    "list_json": ("[]", "[X]", "json.dumps(one)"),
    "dict_json": ("{}", "{'a': X}", "json.dumps(one)"),
}
BENIGN = "def parse(payload, metadata):\n    return {'pair': list((len(payload), 1))}\n"


def program(case: str) -> str:
    first, step, operation = FAMILY[case]
    return (
        PROGRAM.replace("FIRST", first)
        .replace("STEP_ONE", step.replace("X", "one"))
        .replace("STEP_TWO", step.replace("X", "two"))
        .replace("OPERATION", operation)
        .replace("DEPTH", str(DEPTH))
    )


@pytest.fixture(scope="module")
async def patient(sandbox_db: str) -> AsyncIterator[SandboxServer]:
    """A sandbox whose calls have time to build three hundred thousand levels."""
    config = sandbox_config(sandbox_db, limits=Limits(timeout_ms=3000), workers=1, spares=0)
    async with SandboxServer(config) as server:
        yield server


@pytest.fixture(scope="module")
async def patient_client(patient: SandboxServer) -> AsyncIterator[SandboxClient]:
    async with SandboxClient(patient.config.listen, timeout_s=30) as created:
        yield created


@pytest.mark.parametrize("case", sorted(FAMILY))
async def test_deep_nesting_is_a_runtime_error_not_a_dead_worker(
    case: str, patient: SandboxServer, patient_client: SandboxClient
) -> None:
    before = set(patient.trials.pool.pids)  # TestParser runs on its own lane
    response = await patient_client.test_parser(program(case), contact=contact("test"))
    kind, error = outcome(response)
    assert kind == "runtime_error", (kind, error)
    assert "RecursionError" in error.message or "NestingError" in error.message, error.message
    assert set(patient.trials.pool.pids) == before  # the worker lived through it
    response = await patient_client.test_parser(BENIGN, contact=contact("test", b"abc"))
    assert outcome(response) == ("ok", {"pair": [3, 1]})
    assert set(patient.trials.pool.pids) == before


def test_shallow_and_wide_tuples_pass_untouched() -> None:
    wide = tuple((i, (i, (i,))) for i in range(10_000))
    assert checked(wide) is wide
    deep: tuple[object, ...] = ()
    for _ in range(MAX_TUPLE_DEPTH):  # the innermost () is empty: MAX_TUPLE_DEPTH levels
        deep = checked((deep, 1))
    with pytest.raises(RecursionError):
        checked((deep, 1))


def test_the_parser_tuple_builtin_is_still_tuple() -> None:
    made = ParserTuple([1, 2])
    assert type(made) is tuple and made == (1, 2)
    assert isinstance((1,), ParserTuple) and issubclass(tuple, ParserTuple)
    assert not isinstance([1], ParserTuple)
