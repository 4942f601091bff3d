"""A cheap static pre-scan of a parser source: refuse what a bound shows is too costly to
compile, before any worker spends its compile budget on it.

Tokens only (linear time, no syntax tree): a tokenize error is left to the compiler,
which reports it properly; what was scanned before it was already checked.
"""

from __future__ import annotations

import io
import tokenize

from preservarium.contract.kinds import ErrorKind

from preservarium_sandbox.engine.errors import ScriptFailure
from preservarium_sandbox.limits import SourceScanLimits

OPENERS = frozenset("([{")
CLOSERS = frozenset(")]}")
# After these a bracket is a call or subscript: one more link of the chain before it.
POSTFIX_AFTER = frozenset({tokenize.NAME, tokenize.STRING, tokenize.NUMBER})
SKIPPED = frozenset({tokenize.COMMENT, tokenize.NL, tokenize.INDENT, tokenize.DEDENT})


def _too_costly(what: str, line: int) -> ScriptFailure:
    return ScriptFailure(
        ErrorKind.COMPILE_ERROR, f"the source is too costly to compile: {what}", line
    )


class _Chains:
    """The running chain of links and the cost summed so far."""

    def __init__(self, limits: SourceScanLimits) -> None:
        self.limits = limits
        self.chain = 0
        self.cost = 0
        self.stack: list[tuple[int, bool]] = []  # per open bracket: chain before it, postfix

    def link(self, line: int) -> None:
        self.chain += 1
        self.cost += max(0, self.chain - self.limits.free_links)
        if self.chain > self.limits.max_chain:
            raise _too_costly(f"a chain of over {self.limits.max_chain} links", line)
        if self.cost > self.limits.max_chain_cost:
            raise _too_costly("too many long attribute or subscript chains", line)

    def open(self, postfix: bool, line: int) -> None:
        self.stack.append((self.chain, postfix))
        if len(self.stack) > self.limits.max_nesting:
            raise _too_costly(f"brackets nested over {self.limits.max_nesting} deep", line)
        self.chain = 0

    def close(self, line: int) -> None:
        before, postfix = self.stack.pop() if self.stack else (0, False)
        if postfix:  # a call or subscript continues the chain it follows
            self.chain = before
            self.link(line)
        # else: a parenthesized expression keeps the chain it ended with


def scan_source(source: str, limits: SourceScanLimits) -> ScriptFailure | None:
    """The compile-cost refusal of `source`, or None when no static bound refuses it."""
    chains = _Chains(limits)
    previous: tokenize.TokenInfo | None = None
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type in SKIPPED:
                continue
            line = token.start[0]
            if token.type == tokenize.OP and token.string == ".":
                chains.link(line)
            elif token.type == tokenize.OP and token.string in OPENERS:
                postfix = previous is not None and (
                    previous.type in POSTFIX_AFTER or previous.string in CLOSERS
                )
                chains.open(postfix, line)
            elif token.type == tokenize.OP and token.string in CLOSERS:
                chains.close(line)
            elif not (token.type == tokenize.NAME and previous and previous.string == "."):
                chains.chain = 0
            previous = token
    except ScriptFailure as refusal:
        return refusal
    except (tokenize.TokenError, SyntaxError):
        return None
    return None
