"""engine.template's copier runs no parser code: hostile hooks, in plain Python.

Parser code cannot define dunder methods (the compile policy refuses the names); these
tests give the copier modules compiled without that policy, whose objects carry every
hook a copy protocol could call, and check that none runs and the module is executed
for every call instead.
"""

from __future__ import annotations

import builtins
import gc
import os
import signal
import sys
import tracemalloc
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest
from preservarium_sandbox.engine.compiler import CompiledParser, compile_parser
from preservarium_sandbox.engine.runner import Deadline, run_job
from preservarium_sandbox.engine.template import ModuleImage
from preservarium_sandbox.limits import CACHED_VERSIONS, MAX_TEMPLATE_BYTES, Limits
from preservarium_sandbox.worker import main as worker_main

HOOKS = (
    "    def __deepcopy__(self, memo):\n        record('deepcopy')\n        return self\n"
    "    def __copy__(self):\n        record('copy')\n        return self\n"
    "    def __reduce_ex__(self, protocol):\n"
    "        record('reduce_ex')\n        return (int, ())\n"
    "    def __reduce__(self):\n        record('reduce')\n        return (int, ())\n"
    "    def __getstate__(self):\n        record('getstate')\n        return {}\n"
    "    def __hash__(self):\n        record('hash')\n        return 1\n"
    "    def __eq__(self, other):\n        record('eq')\n        return False\n"
)

HOSTILE: dict[str, str] = {
    "instance_with_copy_hooks": f"class K:\n{HOOKS}VALUE = K()\n",
    "instance_as_a_key": f"class K:\n{HOOKS}TABLE = {{K(): 1}}\n",
    "instance_in_a_closure": (
        f"class K:\n{HOOKS}"
        "def make():\n    held = K()\n    def get():\n        return held\n    return get\n"
        "GET = make()\n"
    ),
    "descriptor_doc": (
        "class Doc:\n    def __get__(self, obj, owner):\n        record('get')\n        return ''\n"
        "class K:\n    pass\n"
        "type.__setattr__(K, '__doc__', Doc())\n"
    ),
    "instance_as_a_default": f"class K:\n{HOOKS}def f(x=K()):\n    return x\n",
}


def _image_and_calls() -> tuple[ModuleImage, list[str], Callable[[], dict[str, Any]]]:
    calls: list[str] = []

    def fresh() -> dict[str, Any]:
        return {"__builtins__": builtins, "__name__": "parser", "record": calls.append}

    return ModuleImage(), calls, fresh


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_the_copier_calls_no_hook_of_a_parser_object(name: str) -> None:
    image, calls, fresh = _image_and_calls()
    code = compile(HOSTILE[name] + "def parse(payload, metadata):\n    return {}\n", "p", "exec")
    exec(code, fresh())  # what executing the module calls by itself
    by_execution = list(calls)
    calls.clear()
    for _ in range(3):
        image.load(code, fresh, lambda: True)
    assert image.mode == "executed"
    assert calls == by_execution * 3


def test_a_class_with_creation_hooks_is_not_recreated() -> None:
    image, calls, fresh = _image_and_calls()
    source = (
        "class Base:\n    def __init_subclass__(cls):\n        record('subclass')\n"
        "class Child(Base):\n    pass\n"
    )
    code = compile(source, "p", "exec")
    for _ in range(3):
        image.load(code, fresh, lambda: True)
    assert image.mode == "executed"
    assert calls == ["subclass"] * 3  # once per execution, never by a copy


def test_copies_keep_aliases_cycles_and_closures_apart_from_the_template() -> None:
    image, _, fresh = _image_and_calls()
    source = (
        "SHARED = [1]\nPAIR = (SHARED, SHARED)\nLOOP = {}\nLOOP['self'] = LOOP\n"
        "class K:\n    items = SHARED\n    def me(self):\n        return K\n"
        "def counter():\n    def again(n):\n        return again if n else None\n    return again\n"
        "AGAIN = counter()\n"
    )
    code = compile(source, "p", "exec")
    first = image.load(code, fresh, lambda: True)
    second = image.load(code, fresh, lambda: True)
    assert image.mode == "copied"
    assert second["PAIR"][0] is second["PAIR"][1] is second["SHARED"] is second["K"].items
    assert second["SHARED"] is not first["SHARED"]
    assert second["LOOP"]["self"] is second["LOOP"]
    assert second["K"]().me() is second["K"] is not first["K"]
    assert second["AGAIN"](1) is second["AGAIN"]
    assert second["AGAIN"].__globals__ is second


def test_a_released_image_decides_again() -> None:
    image, _, fresh = _image_and_calls()
    code = compile("TABLE = {}\n", "p", "exec")
    image.load(code, fresh, lambda: True)
    assert image.mode == "copied"
    image.release()
    assert image.mode == "undecided"
    assert image.load(code, fresh, lambda: True)["TABLE"] == {}


def test_a_copied_function_is_the_executed_one_on_new_globals() -> None:
    image, _, fresh = _image_and_calls()
    source = (
        "TABLE = {'a': 1}\nSAME = TABLE\n"
        "def documented(x, y=(1, 2)):\n    'Its docstring.'\n    return TABLE\n"
        "def plain():\n    return 'not a docstring' if TABLE else None\n"
        "ALIAS = documented\nHANDLERS = {'d': documented}\n"
    )
    code = compile(source, "p", "exec")
    executed = image.load(code, fresh, lambda: True)
    image.load(code, fresh, lambda: True)
    copied = image.load(code, fresh, lambda: True)  # from the learned plan
    for name in ("documented", "plain"):
        old, new = executed[name], copied[name]
        assert new is not old and new.__globals__ is copied
        assert (new.__doc__, new.__qualname__, new.__module__, new.__defaults__) == (
            old.__doc__,
            old.__qualname__,
            old.__module__,
            old.__defaults__,
        )
    assert copied["ALIAS"] is copied["HANDLERS"]["d"] is copied["documented"]
    assert copied["SAME"] is copied["TABLE"] is copied["documented"](0) is not executed["TABLE"]


def test_a_worker_releases_the_template_of_a_version_it_evicts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The worker's cache itself, without its deadline clock (which would set this
    # process's CPU limits): each version compiled, run once, then the oldest evicted.
    monkeypatch.setattr(worker_main, "CACHED_VERSIONS", 2)
    handlers = {number: signal.getsignal(number) for number in (signal.SIGALRM, signal.SIGXCPU)}
    worker = worker_main.Worker(Limits(timeout_ms=2000))
    try:
        source = "TABLE = {}\ndef parse(payload, metadata):\n    return {'n': len(TABLE)}\n"
        contact = {"device_id": "d", "device_type": "t", "path": "", "method": "POST",
                   "confirmable": True, "received_at": 0, "query": {}}  # fmt: skip
        images = []
        for sha in ("a" * 64, "b" * 64, "c" * 64):
            parser = worker._compiled({"sha": sha, "source": source})
            assert isinstance(parser, CompiledParser)
            assert run_job(parser, {"contact": contact, "blob": b""}, Limits()).ok is True
            assert parser.image.mode == "copied"
            images.append(parser.image)
        worker._compiled({"sha": "d" * 64, "source": source})
        assert [image.mode for image in images] == ["undecided", "undecided", "copied"]
    finally:
        os.close(worker.footprint._fd)
        for number, handler in handlers.items():
            signal.signal(number, handler)


def test_a_deadline_that_lands_while_the_image_decides_leaves_it_undecided() -> None:
    # The worker's deadline is a signal: its exception can land between any two bytecodes
    # of load(). Landing in the sorting of a kept template once left the image "copied"
    # but still learning, so that every later copy counted the template again until it
    # was "too large", and every call of the version failed. A trace function raises it
    # exactly there.
    image, _, fresh = _image_and_calls()
    code = compile("TABLE = {'a': [1]}\nNAMES = [str(n) for n in range(1000)]\n", "p", "exec")
    sort_code = ModuleImage._sort.__code__

    def deadline_in_sort(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "call" and frame.f_code is sort_code:
            raise Deadline
        return None

    sys.settrace(deadline_in_sort)
    try:
        with pytest.raises(Deadline):
            image.load(code, fresh, lambda: True)
    finally:
        sys.settrace(None)
    assert image.mode == "undecided"
    for _ in range(40):  # forty times its size is more than MAX_TEMPLATE_BYTES
        namespace = image.load(code, fresh, lambda: True)
        assert (namespace["TABLE"], namespace["NAMES"]) == (
            {"a": [1]},
            [str(n) for n in range(1000)],
        )
    assert image.mode == "copied"


# Modules whose template is mostly what the copier once left uncounted: the ids its plan
# learns (an empty list or dict each), closures and their cells, classes' own dicts.
PINNING: dict[str, Callable[[int], str]] = {
    "empty_lists": lambda n: f"T = [[] for i in range({n})]\n",
    "empty_dicts": lambda n: f"T = [{{}} for i in range({n})]\n",
    "closures": lambda n: (
        "def make():\n    x = 1\n    def get():\n        return x\n    return get\n"
        f"T = [make() for i in range({n})]\n"
    ),
    "classes": lambda n: "".join(f"class C{i}:\n    pass\n" for i in range(n)),
}


# Sizes around MAX_TEMPLATE_BYTES, where the count differs from the default.
COUNTS = {"closures": (200, 400, 600, 700, 800), "classes": (30, 60, 90, 120, 150)}


@pytest.mark.parametrize("name", sorted(PINNING))
def test_a_kept_template_pins_about_what_its_size_bound_says(name: str) -> None:
    # A worker keeps the templates of CACHED_VERSIONS versions: their sum must stay
    # under the residue over which it is replaced, so each one's count must be honest.
    contact = {"device_id": "d", "device_type": "t", "path": "", "method": "POST",
               "confirmable": True, "received_at": 0, "query": {}}  # fmt: skip
    pinned: dict[int, int] = {}
    for n in COUNTS.get(name, (400, 1200, 1600, 2400, 3200, 4000)):
        source = PINNING[name](n) + "def parse(payload, metadata):\n    return {}\n"
        parser = compile_parser(source)
        gc.collect()
        tracemalloc.start()
        try:
            assert run_job(parser, {"contact": contact, "blob": b""}, Limits()).ok is True
            gc.collect()
            if parser.image.mode == "copied":
                pinned[n] = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
            parser.image.release()
    assert len(pinned) >= 2  # some of these sizes are kept
    bound = MAX_TEMPLATE_BYTES * 5 // 4
    assert max(pinned.values()) < bound, pinned
    residue = Limits().max_residue_mb << 20
    assert bound * CACHED_VERSIONS < residue
