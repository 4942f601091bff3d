"""Nothing one call of a parser changes in its module's state is seen by the next call.

Each parser below changes one kind of module-level state in every call and returns what
it found before changing it: every call must find the state as the module made it.
Run through the engine (the same compiled parser, call after call, as a worker runs it)
and through a real worker pool of one worker (every call on the same process).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from preservarium_sandbox.engine.compiler import compile_parser
from preservarium_sandbox.engine.result import JobResult
from preservarium_sandbox.engine.runner import run_job
from preservarium_sandbox.limits import Limits
from preservarium_sandbox.pool import Job, WorkerPool
from preservarium_sandbox.worker.protocol import Answer

CONTACT = {
    "device_id": "dev-1", "device_type": "test", "path": "", "method": "POST",
    "confirmable": True, "received_at": 1_700_000_000, "query": {},
}  # fmt: skip
CALLS = 3
# The first measurements example of examples/parsers/efento.examples.yaml.
EFENTO_MEASUREMENTS = bytes.fromhex(
    "0a06282c020000011001183c221308011094affefd0520c8012a061e289affff074001"
)

# name -> (source, the document every call must return)
MUTATIONS: dict[str, tuple[str, Any]] = {
    "dict": (
        "D = {'a': 1}\n"
        "def parse(payload, metadata):\n"
        "    seen = sorted(str(k) for k in D)\n"
        "    D['b'] = 2\n"
        "    del D['a']\n"
        "    return {'keys': seen}\n",
        {"keys": ["a"]},
    ),
    "list": (
        "L = [1]\n"
        "def parse(payload, metadata):\n"
        "    seen = list(L)\n"
        "    L.append(2)\n"
        "    L[0] = 9\n"
        "    return {'items': seen}\n",
        {"items": [1]},
    ),
    "set": (
        "S = {1}\n"
        "def parse(payload, metadata):\n"
        "    seen = sorted(S)\n"
        "    S.add(2)\n"
        "    S.discard(1)\n"
        "    return {'items': seen}\n",
        {"items": [1]},
    ),
    "nested": (
        "N = {'x': [{'y': [1]}, (1, [2])]}\n"
        "ALIAS = N['x'][0]\n"
        "def parse(payload, metadata):\n"
        "    seen = [len(N['x'][0]['y']), len(N['x'][1][1]), ALIAS is N['x'][0]]\n"
        "    N['x'][0]['y'].append(1)\n"
        "    N['x'][1][1].append(3)\n"
        "    ALIAS['z'] = 1\n"
        "    return {'seen': seen, 'z': 'z' in N['x'][0]}\n",
        {"seen": [1, 1, True], "z": True},
    ),
    "self_referencing": (
        "R = []\n"
        "R.append(R)\n"
        "def parse(payload, metadata):\n"
        "    seen = [len(R), R[0] is R]\n"
        "    R.append(1)\n"
        "    return {'seen': seen}\n",
        {"seen": [1, True]},
    ),
    "closure_cell": (
        "def make():\n"
        "    box = []\n"
        "    def bump():\n"
        "        box.append(1)\n"
        "        return len(box)\n"
        "    return bump\n"
        "BUMP = make()\n"
        "def parse(payload, metadata):\n"
        "    return {'n': BUMP()}\n",
        {"n": 1},
    ),
    "shared_closure_cell": (
        "def make():\n"
        "    box = {}\n"
        "    def put():\n"
        "        box[len(box)] = 1\n"
        "    def size():\n"
        "        return len(box)\n"
        "    return put, size\n"
        "PUT, SIZE = make()\n"
        "def parse(payload, metadata):\n"
        "    before = SIZE()\n"
        "    PUT()\n"
        "    return {'before': before, 'after': SIZE()}\n",
        {"before": 0, "after": 1},
    ),
    "default_argument": (
        "def parse(payload, metadata, cache=[], *, seen={}):\n"
        "    cache.append(1)\n"
        "    seen[len(seen)] = 1\n"
        "    return {'cache': len(cache), 'seen': len(seen)}\n",
        {"cache": 1, "seen": 1},
    ),
    "default_of_a_helper": (
        "def remember(value, memory=[]):\n"
        "    memory.append(value)\n"
        "    return len(memory)\n"
        "def parse(payload, metadata):\n"
        "    return {'n': remember(1)}\n",
        {"n": 1},
    ),
    "class_attribute": (
        "class K:\n"
        "    items = []\n"
        "    table = {'a': [1]}\n"
        "def parse(payload, metadata):\n"
        "    seen = [len(K.items), len(K.table['a'])]\n"
        "    K.items.append(1)\n"
        "    K.table['a'].append(2)\n"
        "    return {'seen': seen}\n",
        {"seen": [0, 1]},
    ),
    "class_mutated_by_a_method": (
        "class Base:\n"
        "    log = []\n"
        "    def record(self, value):\n"
        "        self.log.append(value)\n"
        "        return len(self.log)\n"
        "class Child(Base):\n"
        "    def count(self):\n"
        "        return len(Base.log)\n"
        "def parse(payload, metadata):\n"
        "    child = Child()\n"
        "    before = child.count()\n"
        "    return {'before': before, 'after': child.record(1),\n"
        "            'subclass': isinstance(child, Base)}\n",
        {"before": 0, "after": 1, "subclass": True},
    ),
    "nested_class": (
        "class Outer:\n"
        "    class Inner:\n"
        "        seen = []\n"
        "    def add(self, value):\n"
        "        self.Inner.seen.append(value)\n"
        "        return len(Outer.Inner.seen)\n"
        "def parse(payload, metadata):\n"
        "    before = len(Outer.Inner.seen)\n"
        "    return {'before': before, 'after': Outer().add(1)}\n",
        {"before": 0, "after": 1},
    ),
    "module_level_instance": (
        "class Stack(list):\n"
        "    shared = {}\n"
        "STACK = Stack([1])\n"
        "def parse(payload, metadata):\n"
        "    seen = [len(STACK), len(STACK.shared)]\n"
        "    STACK.append(2)\n"
        "    STACK.shared['a'] = 1\n"
        "    return {'seen': seen}\n",
        {"seen": [1, 0]},
    ),
    "exception_class": (
        "class Bad(ValueError):\n"
        "    seen = []\n"
        "def parse(payload, metadata):\n"
        "    Bad.seen.append(1)\n"
        "    try:\n"
        "        raise Bad('x')\n"
        "    except ValueError as exc:\n"
        "        return {'n': len(exc.seen)}\n",
        {"n": 1},
    ),
    "iterator_advanced": (
        "IT = iter([1, 2, 3])\ndef parse(payload, metadata):\n    return {'n': next(IT)}\n",
        {"n": 1},
    ),
    "generator_advanced": (
        "def numbers():\n"
        "    yield 1\n"
        "    yield 2\n"
        "GEN = numbers()\n"
        "def parse(payload, metadata):\n"
        "    return {'n': next(GEN)}\n",
        {"n": 1},
    ),
    "global_rebound": (
        "COUNT = 0\n"
        "TABLE = {'a': 1}\n"
        "def parse(payload, metadata):\n"
        "    global COUNT, TABLE, NEW\n"
        "    COUNT = COUNT + 1\n"
        "    TABLE = {}\n"
        "    NEW = 1\n"
        "    return {'count': COUNT, 'table': len(TABLE)}\n",
        {"count": 1, "table": 0},
    ),
    "global_created_by_a_call": (
        "def parse(payload, metadata):\n"
        "    global LATER\n"
        "    try:\n"
        "        seen = LATER\n"
        "    except NameError:\n"
        "        seen = None\n"
        "    LATER = 1\n"
        "    return {'seen': seen}\n",
        {"seen": None},
    ),
    "function_rebound_at_module_level": (
        "def helper():\n"
        "    return 1\n"
        "def parse(payload, metadata):\n"
        "    global helper\n"
        "    seen = helper()\n"
        "    helper = lambda: 2\n"
        "    return {'seen': seen}\n",
        {"seen": 1},
    ),
    "entry_point_rebound": (
        "def parse(payload, metadata):\n"
        "    global parse\n"
        "    parse = lambda payload, metadata: {'replaced': True}\n"
        "    return {'replaced': False}\n",
        {"replaced": False},
    ),
    "warn_rebound": (
        "def parse(payload, metadata):\n"
        "    global warn\n"
        "    warn('once')\n"
        "    warn = lambda message: None\n"
        "    return {}\n",
        {},
    ),
}

# Writes that the policy refuses outright: refused the same way in every call.
REFUSED: dict[str, str] = {
    "function_attribute": (
        "def helper():\n    return 1\n"
        "def parse(payload, metadata):\n    helper.x = 1\n    return {}\n"
    ),
    "class_attribute_assignment": (
        "class K:\n    n = 0\ndef parse(payload, metadata):\n    K.n = 1\n    return {}\n"
    ),
    "globals": "def parse(payload, metadata):\n    return globals()\n",
    "vars": "def parse(payload, metadata):\n    return vars()\n",
}


def _job() -> dict[str, Any]:
    return {"contact": CONTACT, "blob": b"\x01"}


def _data_json(answer: JobResult) -> str:
    assert answer.ok is True and answer.contact is not None, answer
    return answer.contact.data_json


def _document(answer: JobResult) -> Any:
    return json.loads(_data_json(answer))


def _error_kind(answer: JobResult) -> Any:
    assert answer.error is not None, answer
    return answer.error["kind"]


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_every_call_of_the_engine_finds_the_module_state_pristine(name: str) -> None:
    source, expected = MUTATIONS[name]
    parser = compile_parser(source)
    documents = [_document(run_job(parser, _job(), Limits())) for _ in range(CALLS)]
    assert documents == [expected] * CALLS


def test_a_warn_rebound_by_one_call_still_warns_in_the_next() -> None:
    parser = compile_parser(MUTATIONS["warn_rebound"][0])
    answers = [run_job(parser, _job(), Limits()) for _ in range(CALLS)]
    assert [answer.warnings for answer in answers] == [("once",)] * CALLS


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_writes_the_policy_refuses_are_refused_in_every_call(name: str) -> None:
    parser = compile_parser(REFUSED[name])
    kinds = [_error_kind(run_job(parser, _job(), Limits())) for _ in range(CALLS)]
    assert kinds == ["runtime_error"] * CALLS


async def test_every_call_on_one_worker_finds_the_module_state_pristine() -> None:
    async with WorkerPool(size=1, limits=Limits(timeout_ms=2000), spares=0) as pool:
        for name, (source, expected) in sorted(MUTATIONS.items()):
            sha = name.ljust(64, "0")[:64]
            for _ in range(CALLS):
                job = Job(sha=sha, source=source, contact=CONTACT, payload=b"\x01")
                answer = await pool.run(job)
                assert isinstance(answer, Answer) and answer.ok, (name, answer)
                assert answer.document is not None and json.loads(answer.document) == expected


# What cannot be copied without running parser code (or at all) is executed every call.
EXECUTED = ("generator_advanced", "iterator_advanced", "module_level_instance")


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_a_module_is_copied_unless_it_holds_what_cannot_be_copied(name: str) -> None:
    parser = compile_parser(MUTATIONS[name][0])
    assert parser.image.mode == "undecided"
    run_job(parser, _job(), Limits())
    assert parser.image.mode == ("executed" if name in EXECUTED else "copied")


def test_the_efento_parser_is_copied_and_parses_alike_every_call() -> None:
    source = (Path(__file__).parents[2] / "examples" / "parsers" / "efento.py").read_text()
    parser = compile_parser(source)
    job = {"contact": {**CONTACT, "path": "m"}, "blob": EFENTO_MEASUREMENTS}
    answers = [run_job(parser, job, Limits(timeout_ms=5000)) for _ in range(CALLS)]
    assert parser.image.mode == "copied"
    assert answers[0].ok is True, answers[0]
    assert [_data_json(answer) for answer in answers] == [_data_json(answers[0])] * CALLS


# name -> source of a module executed for every call, and what each call must return.
FALLBACKS: dict[str, tuple[str, Any]] = {
    "module_prints": (
        "print('loaded')\ndef parse(payload, metadata):\n    return {}\n",
        {},
    ),
    "module_warns": (
        "warn('loaded')\ndef parse(payload, metadata):\n    return {}\n",
        {},
    ),
    "warn_kept_at_module_level": (
        "W = warn\ndef parse(payload, metadata):\n    W('x')\n    return {}\n",
        {},
    ),
    "nested_too_deep": (
        "D = []\nfor i in range(150):\n    D = [D]\n"
        "def parse(payload, metadata):\n    D.append(1)\n    return {'n': len(D)}\n",
        {"n": 2},
    ),
    "too_many_objects": (
        "BIG = [[i] for i in range(60000)]\n"
        "def parse(payload, metadata):\n    BIG.append(1)\n    return {'n': len(BIG)}\n",
        {"n": 60001},
    ),
    "too_large_to_keep": (
        "TEXT = 'x' * 300000\nTABLE = {'a': []}\n"
        "def parse(payload, metadata):\n"
        "    TABLE['a'].append(1)\n    return {'n': len(TABLE['a']), 't': len(TEXT)}\n",
        {"n": 1, "t": 300000},
    ),
    "bound_method": (
        "SEEN = []\nADD = SEEN.append\n"
        "def parse(payload, metadata):\n    ADD(1)\n    return {'n': len(SEEN)}\n",
        {"n": 1},
    ),
}


@pytest.mark.parametrize("name", sorted(FALLBACKS))
def test_a_module_that_cannot_be_copied_is_executed_every_call(name: str) -> None:
    source, expected = FALLBACKS[name]
    parser = compile_parser(source)
    answers = [run_job(parser, _job(), Limits(timeout_ms=5000)) for _ in range(CALLS)]
    assert parser.image.mode == "executed"
    assert [_document(answer) for answer in answers] == [expected] * CALLS
    for answer in answers[1:]:  # what the module said while loading, said every call
        assert (answer.printed, answer.warnings[:1]) == (
            answers[0].printed,
            answers[0].warnings[:1],
        )
