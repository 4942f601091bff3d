"""What parser code can turn into text: print() and repr/str/format show no host internals.

Run through the engine itself (compile, run_job), as the worker runs it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from preservarium_sandbox.engine.compiler import compile_parser
from preservarium_sandbox.engine.runner import run_job
from preservarium_sandbox.limits import Limits

CONTACT = {
    "device_id": "dev-1", "device_type": "test", "path": "", "method": "POST",
    "confirmable": True, "received_at": 1_700_000_000, "query": {},
}  # fmt: skip


def run(source: str, limits: Limits | None = None) -> tuple[str, Any]:
    """('ok', document) or (error kind, message) of one parse() call."""
    parser = compile_parser(source)
    answer = run_job(parser, {"contact": CONTACT, "blob": b"\x01"}, limits or Limits())
    if answer.error is not None:
        return answer.error["kind"], answer.error["message"]
    assert answer.ok and answer.contact is not None, answer
    return "ok", json.loads(answer.contact.data_json)


def test_print_takes_flush_sep_and_end_and_leaks_no_collector() -> None:
    source = (
        "def parse(payload, metadata):\n"
        "    try:\n"
        "        print('a', 'b', sep='-', end='!', flush=True)\n"
        "        print('c', sep=None, end=None)\n"
        "    except AttributeError as exc:\n"
        "        return {'leaked': repr(exc.obj)}\n"
        "    return {'printed': printed}\n"
    )
    assert run(source) == ("ok", {"printed": "a-b!c\n"})


def test_print_to_a_file_is_a_clean_error() -> None:
    source = (
        "class Sink:\n    def write(self, text):\n        pass\n"
        "def parse(payload, metadata):\n    print('x', file=Sink())\n    return {}\n"
    )
    kind, message = run(source)
    assert kind == "runtime_error" and message.startswith("line 5: TypeError")


def test_printed_text_is_capped_by_the_limit() -> None:
    source = (
        "def parse(payload, metadata):\n"
        "    for i in range(100):\n        print('x' * 50)\n"
        "    return {'n': len(printed)}\n"
    )
    assert run(source, Limits(max_print_chars=123)) == ("ok", {"n": 123})
    assert run(source) == ("ok", {"n": Limits().max_print_chars})


SHOWN = """
class Thing:
    def method(self):
        return 1

def function():
    return 1

def generator():
    yield 1

def parse(payload, metadata):
    thing = Thing()
    return {"text": EXPRESSION}
"""

ADDRESSED = [
    "repr(function)", "str(function)", "repr(thing)", "str(thing)", "repr(thing.method)",
    "repr([function, thing, generator()])", "repr(generator())", "repr(iter([1]))",
    "repr([].append)", "repr(warn)", "repr(print)",
    "f'{function}'", "f'{function!r}'", "f'{function!s}'", "f'{function!a}'",
    "f'{thing}'", "f'{thing.method!r:>80}'", "f'{[function]}'", "f'{generator()}'",
    "'%r' % function", "'%s' % function", "'%s %r' % (thing, [function])",
    "'%(f)s' % {'f': function}", "str(b'%r' % function)",
]  # fmt: skip


@pytest.mark.parametrize("expression", ADDRESSED)
def test_text_of_host_and_parser_objects_holds_no_address(expression: str) -> None:
    kind, document = run(SHOWN.replace("EXPRESSION", expression))
    assert kind == "ok", document
    text = document["text"]
    assert "0x" not in text and text.startswith(("<", "[", "b'", "'<", " ")), text


def test_inplace_percent_shows_no_address() -> None:
    source = SHOWN.replace('{"text": EXPRESSION}', "{'text': text}").replace(
        "    thing = Thing()\n", "    text = '%s'\n    text %= [function]\n"
    )
    kind, document = run(source)
    assert kind == "ok" and "0x" not in document["text"], document


PLAIN = {
    "f'{3.14159:.2f}|{7:>4}|{\"x\"!r}'": "3.14|   7|'x'",
    "'%05d|%s|%r' % (42, 'at 0x1', 'y')": "00042|at 0x1|'y'",
    "'%(a)s' % {'a': 'b at 0xff'}": "b at 0xff",
    "str(b'at 0x10')": "b'at 0x10'",
    "repr('x at 0x1234')": "'x at 0x1234'",
    "f'{\"id at 0xabc\"}'": "id at 0xabc",
    "str(17 % 5) + str(17.5 % 5)": "22.5",
}


@pytest.mark.parametrize(("expression", "expected"), PLAIN.items())
def test_plain_values_format_exactly_as_in_python(expression: str, expected: str) -> None:
    assert run(SHOWN.replace("EXPRESSION", expression)) == ("ok", {"text": expected})


def test_what_a_call_prints_from_any_function_comes_back_with_its_answer() -> None:
    parser = compile_parser(
        "def helper(n):\n    print('helper', n)\n    return n\n"
        "def parse(payload, metadata):\n    print('parse\\x1b')\n    return {'n': helper(2)}\n"
    )
    answer = run_job(parser, {"contact": CONTACT, "blob": b"\x01"}, Limits())
    assert answer.ok and answer.printed == "parse\x1b\nhelper 2\n"


def test_what_a_failing_call_printed_comes_back_too() -> None:
    parser = compile_parser(
        "def parse(payload, metadata):\n    print('got', len(payload))\n    return 1 / 0\n"
    )
    answer = run_job(parser, {"contact": CONTACT, "blob": b"\x01\x02"}, Limits())
    assert not answer.ok and answer.printed == "got 2\n"


def test_the_cap_bounds_all_of_a_calls_functions_together() -> None:
    parser = compile_parser(
        "def helper():\n    print('y' * 80)\n    return len(printed)\n"
        "def parse(payload, metadata):\n    print('x' * 80)\n"
        "    return {'helper': helper(), 'own': len(printed)}\n"
    )
    answer = run_job(parser, {"contact": CONTACT, "blob": b"\x01"}, Limits(max_print_chars=100))
    # `printed` stays per function; the call's output is capped as a whole.
    assert answer.contact is not None
    assert json.loads(answer.contact.data_json) == {"helper": 19, "own": 81}
    assert answer.printed == "x" * 80 + "\n" + "y" * 19


def test_a_call_that_prints_nothing_sends_no_printed_text() -> None:
    parser = compile_parser("def parse(payload, metadata):\n    return {}\n")
    assert run_job(parser, {"contact": CONTACT, "blob": b"\x01"}, Limits()).printed is None
