"""docs/coap.md against the gateway: the response codes table names exactly the codes
the gateway's CoAP modules can answer.

The codes are read from the source of the modules that answer plain CoAP: every
aiocoap renderable error they name (raised, or subclassed for an answer of their own),
every response `Code.X` they use, and the success codes of `coap.SUCCESS`.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import preservarium_gateway.admission as admission_module
import preservarium_gateway.coap as coap_module
import preservarium_gateway.datagrams as datagrams_module
from aiocoap import error
from aiocoap.numbers.codes import Code
from preservarium_gateway.config import GatewayLimits

from tests.repo.markdown import ROOT, first_cells, section

COAP_DOC = ROOT / "docs" / "coap.md"
MODULES = [
    Path(str(module.__file__)) for module in (coap_module, datagrams_module, admission_module)
]
DOTTED = re.compile(r"^`(\d\.\d\d) [A-Z][A-Za-z ]+`$")


def _attributes(tree: ast.AST, owner: str) -> set[str]:
    """The names X of every `owner.X` in `tree`."""
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == owner
    }


def codes_in_source(path: Path) -> set[str]:
    """The response codes a module can answer, as `2.05`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[Code] = set()
    for name in _attributes(tree, "error"):
        renderable = getattr(error, name)
        code = getattr(renderable, "code", None)
        if isinstance(code, Code) and code.is_response():
            found.add(code)
    for name in _attributes(tree, "Code"):
        code = Code[name]
        if code.is_response():
            found.add(code)
    return {code.dotted for code in found}


def gateway_codes() -> set[str]:
    """Every code the gateway answers on plain CoAP."""
    codes = {code.dotted for code in coap_module.SUCCESS.values()}
    for path in MODULES:
        codes |= codes_in_source(path)
    return codes


def documented_codes() -> set[str]:
    """The first column of the response codes table, as `2.05`."""
    cells = first_cells(section(COAP_DOC, "Response codes"))
    codes = set()
    for cell in cells:
        found = DOTTED.match(cell)
        assert found, f"docs/coap.md: {cell!r} is not a `N.NN Name` code"
        codes.add(found.group(1))
    return codes


def test_the_source_scan_finds_the_known_codes() -> None:
    assert {"2.01", "4.00", "4.04", "4.13", "5.03"} <= gateway_codes()


def test_the_response_codes_table_is_what_the_gateway_answers() -> None:
    documented, answered = documented_codes(), gateway_codes()
    assert not answered - documented, f"not in docs/coap.md: {sorted(answered - documented)}"
    assert not documented - answered, f"never answered: {sorted(documented - answered)}"


def test_the_documented_limits_are_the_gateways() -> None:
    text = COAP_DOC.read_text(encoding="utf-8")
    limits = GatewayLimits()
    assert f"over {limits.payload_bytes:,} bytes" in text
    assert f"Size1 = {limits.payload_bytes:,}" in text
    assert f"{limits.max_datagram_bytes:,} bytes" in text
    assert f"{limits.dedup_max_entries:,} requests per endpoint" in text
    assert f"{limits.dedup_source_entries:,} per source" in text
    assert f"{limits.dedup_lifetime_s:.0f} seconds" in text
