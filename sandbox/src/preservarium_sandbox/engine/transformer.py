"""The compile-time policy: RestrictedPython's, plus text conversions that show no address.

Each way parser code turns an object into text is routed to engine.display: f-string
fields (`{x}`, `{x!r}`, `{x!s}`, `{x!a}`), `%` with something but a number on its right,
and a direct `str(x)`. Each tuple display and `*args` goes through engine.nesting. The
helpers are reached through names that start with `_`, which parser code itself can
never spell.
"""

from __future__ import annotations

import ast
from typing import Any

from RestrictedPython.transformer import RestrictingNodeTransformer

FORMAT_HELPERS = {-1: "_format_", ord("s"): "_str_", ord("r"): "_repr_", ord("a"): "_ascii_"}
MOD_HELPER = "_mod_"
NESTING_HELPER = "_nest_"


def _call(helper: str, args: list[ast.expr], like: ast.AST) -> ast.Call:
    name = ast.copy_location(ast.Name(helper, ast.Load()), like)
    return ast.copy_location(ast.Call(func=name, args=args, keywords=[]), like)


def _numeric(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) in (int, float)


def _checked_args(name: str, like: ast.AST) -> ast.expr:
    return _call(NESTING_HELPER, [ast.copy_location(ast.Name(name, ast.Load()), like)], like)


class ParserTransformer(RestrictingNodeTransformer):
    """RestrictingNodeTransformer with address-free text conversions and a tuple depth bound."""

    def visit_Tuple(self, node: ast.Tuple) -> Any:
        """A tuple display that holds more than constants -> `_nest_((...))` (engine.nesting)."""
        node = self.node_contents_visit(node)
        if isinstance(node.ctx, ast.Load) and not all(
            isinstance(element, ast.Constant) for element in node.elts
        ):
            return _call(NESTING_HELPER, [node], node)
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> Any:
        """`def f(*args)`: `args = _nest_(args)` first."""
        visited: Any = super().visit_FunctionDef(node)
        vararg = visited.args.vararg
        if vararg is not None:
            target = ast.copy_location(ast.Name(vararg.arg, ast.Store()), visited)
            check = ast.Assign(targets=[target], value=_checked_args(vararg.arg, visited))
            visited.body.insert(0, ast.fix_missing_locations(ast.copy_location(check, visited)))
        return visited

    def visit_Lambda(self, node: ast.Lambda) -> Any:
        """`lambda *args: body` -> `lambda *args: _nest_(args) is not None and body`."""
        visited: Any = super().visit_Lambda(node)
        vararg = visited.args.vararg
        if vararg is not None:
            check = ast.Compare(
                left=_checked_args(vararg.arg, visited),
                ops=[ast.IsNot()],
                comparators=[ast.Constant(None)],
            )
            body = ast.BoolOp(op=ast.And(), values=[check, visited.body])
            visited.body = ast.fix_missing_locations(ast.copy_location(body, visited.body))
        return visited

    def visit_FormattedValue(self, node: ast.FormattedValue) -> Any:
        """`{value!c:spec}` -> `{_helper_(value)[:spec]}`; no conversion -> `_format_`."""
        node = self.node_contents_visit(node)
        helper = FORMAT_HELPERS[node.conversion]
        args = [node.value]
        if node.conversion == -1 and node.format_spec is not None:
            args.append(node.format_spec)
            node.format_spec = None
        node.value = _call(helper, args, node.value)
        node.conversion = -1
        return node

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        """`a % b` -> `_mod_(a, b)` unless `b` is a number literal (plain arithmetic)."""
        node = self.node_contents_visit(node)
        if isinstance(node.op, ast.Mod) and not _numeric(node.right):
            return _call(MOD_HELPER, [node.left, node.right], node)
        return node

    def visit_Call(self, node: ast.Call) -> Any:
        """A direct `str(x)` -> `_str_(x)`."""
        visited = super().visit_Call(node)
        if (
            isinstance(visited, ast.Call)
            and isinstance(visited.func, ast.Name)
            and visited.func.id == "str"
            and len(visited.args) == 1
            and not isinstance(visited.args[0], ast.Starred)
            and not visited.keywords
        ):
            helper = FORMAT_HELPERS[ord("s")]
            visited.func = ast.copy_location(ast.Name(helper, ast.Load()), visited.func)
        return visited
