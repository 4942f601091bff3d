"""Compile a parser source under RestrictedPython, with the kinds of failure told apart."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from types import CodeType

from preservarium.contract.kinds import ErrorKind
from preservarium.parser_source import FILENAME, denied_import, import_refusal
from RestrictedPython.compile import compile_restricted_exec

from preservarium_sandbox.engine.errors import ScriptFailure
from preservarium_sandbox.engine.template import ModuleImage
from preservarium_sandbox.engine.transformer import ParserTransformer

ENTRY_POINTS = ("parse", "identify", "token", "reply", "format_command")
_LINE = re.compile(r"Line (\d+)")


@dataclass(frozen=True, slots=True)
class CompiledParser:
    """Restricted bytecode of one parser version, the entry points it defines, and how its
    calls get their module namespace (engine.template)."""

    code: CodeType
    functions: frozenset[str]
    image: ModuleImage = field(default_factory=ModuleImage, compare=False, repr=False)


def _denied_import(tree: ast.Module) -> ScriptFailure | None:
    denied = denied_import(tree)
    if denied is None:
        return None
    name, line = denied
    return ScriptFailure(ErrorKind.IMPORT_DENIED, import_refusal(name), line)


def _defined_functions(tree: ast.Module) -> frozenset[str]:
    return frozenset(
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in ENTRY_POINTS
    )


def _first_line(messages: list[str] | tuple[str, ...]) -> int | None:
    for message in messages:
        found = _LINE.search(message)
        if found:
            return int(found.group(1))
    return None


def compile_parser(source: str, *, require_parse: bool = True) -> CompiledParser:
    """Compile `source`; raise ScriptFailure (compile_error, import_denied, missing_function).

    Runs in the worker, under its limits: a source built to blow up the compiler
    (deep nesting, huge expressions) costs only that worker.
    """
    try:
        tree = ast.parse(source, filename=FILENAME)
    except SyntaxError as exc:
        raise ScriptFailure(
            ErrorKind.COMPILE_ERROR, f"SyntaxError: {exc.msg}", exc.lineno
        ) from None
    except (RecursionError, MemoryError, ValueError) as exc:
        raise ScriptFailure(
            ErrorKind.COMPILE_ERROR, f"source cannot be compiled: {type(exc).__name__}"
        ) from None
    denied = _denied_import(tree)
    if denied is not None:
        raise denied
    try:
        result = compile_restricted_exec(source, filename=FILENAME, policy=ParserTransformer)
    except (RecursionError, MemoryError, ValueError, SyntaxError) as exc:
        raise ScriptFailure(
            ErrorKind.COMPILE_ERROR, f"source cannot be compiled: {type(exc).__name__}"
        ) from None
    if result.errors or result.code is None:
        errors = list(result.errors) or ["compilation failed"]
        raise ScriptFailure(ErrorKind.COMPILE_ERROR, "; ".join(errors)[:512], _first_line(errors))
    functions = _defined_functions(tree)
    if require_parse and "parse" not in functions:
        raise ScriptFailure(
            ErrorKind.MISSING_FUNCTION, "the parser defines no parse(payload, metadata) function"
        )
    return CompiledParser(result.code, functions)
