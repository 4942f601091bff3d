"""The reference docs say what the code does: imports, builtins, metadata, error kinds,
and examples that the project's own loader and compiler accept."""

from __future__ import annotations

import re

import pytest
from preservarium.contract.contact import Contact
from preservarium.contract.kinds import ErrorKind
from preservarium.examples import load_examples
from preservarium.parser_source import VETTED_IMPORTS
from preservarium.sandbox_client import contact_proto
from preservarium.settings import TIMEOUT_CEILING_MS
from preservarium_sandbox.engine.compiler import compile_parser
from preservarium_sandbox.engine.facades import VETTED_MODULES
from preservarium_sandbox.engine.policy import BUILTINS
from preservarium_sandbox.engine.runner import run_job
from preservarium_sandbox.limits import DEFAULT_LIMITS, MAX_MESSAGE_CHARS, MAX_TUPLE_DEPTH
from preservarium_sandbox.wire import contact_job

from tests.repo.markdown import ROOT, code_blocks, first_cells, section

PARSERS = ROOT / "docs" / "parsers.md"
NAME = re.compile(r"`(\w+)")


def names_in(cell: str) -> set[str]:
    """The identifiers that start the backticked spans of a table cell."""
    return set(NAME.findall(cell))


def imports_table() -> dict[str, str]:
    """import name -> the 'what it exposes' cell."""
    text = section(PARSERS, "What a parser may use")
    table = text[text.index("**Imports.**") : text.index("**`protowire`**")]
    rows = {}
    for line in table.splitlines():
        found = re.match(r"^\| `(\w+)` \| (.*) \|$", line)
        if found:
            rows[found.group(1)] = found.group(2)
    return rows


def facade_names(module: str) -> set[str]:
    return {name for name in dir(VETTED_MODULES[module]) if not name.startswith("_")}


def test_the_imports_table_names_the_vetted_list() -> None:
    assert set(imports_table()) == VETTED_IMPORTS


@pytest.mark.parametrize("module", ["struct", "base64", "binascii", "json", "datetime", "re"])
def test_each_import_lists_what_its_facade_exposes(module: str) -> None:
    assert names_in(imports_table()[module]) - {"None", "False", "ValueError"} == facade_names(
        module
    )


def test_protowire_table_lists_what_its_facade_exposes() -> None:
    text = section(PARSERS, "What a parser may use")
    table = text[text.index("| `decode(data)`") :]
    table = table[: table.index("\n\n")]
    listed = set().union(*(names_in(line.split("|")[1]) for line in table.splitlines()))
    assert listed == facade_names("protowire")


def test_named_builtins_exist_and_refused_ones_do_not() -> None:
    text = section(PARSERS, "What a parser may use")
    builtins = text[text.index("**Builtins.**") : text.index("**Imports.**")]
    given, _, refused = builtins.partition("There is no")
    allowed = names_in(given)
    assert allowed <= set(BUILTINS), sorted(allowed - set(BUILTINS))
    assert names_in(refused) and not names_in(refused) & set(BUILTINS)


def test_the_metadata_table_is_what_a_parser_receives() -> None:
    source = "def parse(payload, metadata):\n    return {'keys': sorted(metadata)}\n"
    # The contact as the sandbox makes it from a request (wire.contact_job): every key.
    contact = contact_job(contact_proto(Contact(b"", "t")), DEFAULT_LIMITS)
    answer = run_job(compile_parser(source), {"contact": contact, "blob": b""}, DEFAULT_LIMITS)
    assert answer.contact is not None, answer
    documented = {cell.strip("`") for cell in first_cells(section(PARSERS, "`metadata`"))}
    assert (
        f'{{"keys":{sorted(documented)}}}'.replace("'", '"').replace(" ", "")
        == answer.contact.data_json
    )


def test_the_error_kinds_table_is_the_codes() -> None:
    documented = {cell.strip("`") for cell in first_cells(section(PARSERS, "Error kinds"))}
    assert documented == {kind.value for kind in ErrorKind}


@pytest.mark.parametrize("document", ["README.md", "docs/examples-format.md"])
def test_yaml_examples_load_with_the_projects_loader(document: str) -> None:
    blocks = code_blocks(ROOT / document, "yaml")
    assert blocks
    for block in blocks:
        assert load_examples(block)


def test_the_readme_parser_compiles_in_the_sandbox_engine() -> None:
    (block,) = [b for b in code_blocks(ROOT / "README.md", "python") if "def parse" in b]
    compiled = compile_parser(block)
    assert {"parse", "identify", "reply", "format_command"} <= compiled.functions


def limits_table() -> dict[str, str]:
    """limit -> value, from the limits table of docs/parsers.md."""
    rows = {}
    for line in section(PARSERS, "Limits").splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if line.startswith("|") and len(cells) == 2 and not line.startswith("|---"):
            rows[cells[0]] = cells[1]
    return rows


def test_the_limits_table_is_the_sandboxs() -> None:
    limits, rows = DEFAULT_LIMITS, limits_table()
    assert rows["source"].startswith(f"{limits.max_source_bytes // 1024} KiB")
    assert f"default {limits.timeout_ms} ms, at most {TIMEOUT_CEILING_MS}" in rows["time per call"]
    first_compile = rows[
        "time for the first compile of a version in a worker, and its top level's first run"
    ]
    assert first_compile == f"{limits.compile_timeout_ms} ms more"
    assert f"default {limits.memory_mb} MiB" in rows["memory"]
    assert rows["`parse` output"] == (
        f"{limits.max_output_bytes // 1024} KiB as JSON, {limits.max_output_depth} levels deep"
    )
    assert rows["`reply` and `format_command` output"] == f"{limits.max_bytes_output} bytes"
    assert rows["warnings"] == (
        f"{limits.max_warnings} per call, {limits.max_warning_chars} characters each"
    )
    assert rows["error messages"] == f"{MAX_MESSAGE_CHARS} characters"
    assert rows["`print` output"] == f"{limits.max_print_chars} characters per call"
    assert rows["tuple nesting"] == f"{MAX_TUPLE_DEPTH} levels"
    assert rows["memory a call leaves behind"].startswith(f"{limits.max_residue_mb} MiB")
