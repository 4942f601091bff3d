"""The compile-cost pre-scan: bomb shapes refused, real parsers untouched."""

from __future__ import annotations

from pathlib import Path

import pytest
from preservarium.contract.kinds import ErrorKind
from preservarium_sandbox.limits import SourceScanLimits
from preservarium_sandbox.source_scan import scan_source

LIMITS = SourceScanLimits()
HEAD = "def parse(payload, metadata):\n    return {}\n"
EXAMPLES = sorted((Path(__file__).parents[2] / "examples" / "parsers").glob("*.py"))


@pytest.mark.parametrize(
    "body",
    [
        "x = a" + ".b" * 200,  # the attribute chain
        "x = a" + "[0]" * 100,  # the subscript chain
        "x = a" + "[f[0]]" * 40,  # links whose brackets nest
        "x = a" + "().b" * 40,  # calls in between
        "x = (a" + ".b)" * 40,  # parentheses in between
        "x = (\n a\n" + "  .b  # note\n" * 40 + ")",  # split over lines, with comments
        ("x = a" + ".b" * 20 + "\n") * 200,  # many medium chains
        "x = " + "(" * 70 + ")" * 70,  # deep nesting
    ],
)
def test_compile_bomb_shapes_are_refused(body: str) -> None:
    refusal = scan_source(HEAD + body + "\n", LIMITS)
    assert refusal is not None and refusal.kind is ErrorKind.COMPILE_ERROR


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_real_parsers_pass(path: Path) -> None:
    assert scan_source(path.read_text(), LIMITS) is None


def test_a_source_the_tokenizer_rejects_is_left_to_the_compiler() -> None:
    assert scan_source(HEAD + "x = '''unterminated\n", LIMITS) is None
