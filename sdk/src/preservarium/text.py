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
