"""Text that can always be encoded: what the services write about values they were sent.

A Python `str` may hold lone surrogates (from a JSON `\\ud800` escape, or from bytes
decoded with `surrogateescape`); UTF-8 cannot encode them, so one such character makes
`str.encode` raise wherever the text goes next (a Kafka record, a database row, a log).
"""

from __future__ import annotations

import re

SURROGATES = re.compile("[\ud800-\udfff]")
CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")
REPLACEMENT = "\ufffd"
# Characters that steer a terminal rather than show: C0 and C1 controls (ESC, CSI),
# line and paragraph separators, and the bidirectional formatting characters (which
# show text reversed, e.g. a file name or an id spelled backwards).
STEERING = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def has_surrogates(text: str) -> bool:
    """True when `text` holds a lone surrogate (UTF-8 cannot encode it)."""
    return not text.isascii() and SURROGATES.search(text) is not None


def is_plain_text(text: str) -> bool:
    """No lone surrogates and no control characters: safe to store, print and encode."""
    return not has_surrogates(text) and CONTROLS.search(text) is None


def clean_text(text: str, *, limit: int | None = None) -> str:
    """`text` with lone surrogates replaced by U+FFFD, cut to `limit` characters."""
    if limit is not None:
        text = text[:limit]
    return SURROGATES.sub(REPLACEMENT, text) if has_surrogates(text) else text


def terminal_text(text: str) -> str:
    """`text` with every character that steers a terminal written escaped (`\\x1b`,
    `\\u202e`): device- and parser-controlled text may be shown, never obeyed."""
    return STEERING.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
