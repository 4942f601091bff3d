"""The compile-time policy: RestrictedPython's, plus text conversions that show no address.

Each way parser code turns an object into text is routed to engine.display: f-string
fields (`{x}`, `{x!r}`, `{x!s}`, `{x!a}`), `%` with something but a number on its right,
and a direct `str(x)`. The helpers are reached through names that start with `_`, which
parser code itself can never spell.
"""

from __future__ import annotations

import ast
from typing import Any

from RestrictedPython.transformer import RestrictingNodeTransformer

FORMAT_HELPERS = {-1: "_format_", ord("s"): "_str_", ord("r"): "_repr_", ord("a"): "_ascii_"}
MOD_HELPER = "_mod_"


def _call(helper: str, args: list[ast.expr], like: ast.AST) -> ast.Call:
    name = ast.copy_location(ast.Name(helper, ast.Load()), like)
    return ast.copy_location(ast.Call(func=name, args=args, keywords=[]), like)


def _numeric(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) in (int, float)


class ParserTransformer(RestrictingNodeTransformer):
    """RestrictingNodeTransformer with address-free text conversions."""

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
