"""What a call leaves in the vetted modules' caches, dropped before the call ends.

A vetted function may cache what a parser passed it, and a cache outlives the call: a
str subclass with a large class attribute, used as a regex template, would keep its
class (and the attribute) alive in every later call of the worker. The facades pass the
module-level caches of `re` and `struct` only exact str, bytes and int
(engine.facades); what facades cannot wrap is cleaned here, after every call:

- `re`'s template cache (an lru_cache), which compiled patterns' own `sub()` fills;
- `_strptime`'s format cache (at most five entries), which `datetime.strptime` fills
  with the format exactly as the parser passed it.

Everything here costs well under a microsecond when there is nothing to drop.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

# The module behind datetime.strptime (private and untyped: reached by name).
_strptime: Any = importlib.import_module("_strptime")

# re's lru-cached template compilers: `_compile_repl` (3.11), `_compile_template` (3.12+).
_TEMPLATE_CACHES: tuple[Callable[[], None], ...] = tuple(
    cached.cache_clear
    for cached in (getattr(re, "_compile_repl", None), getattr(re, "_compile_template", None))
    if cached is not None and hasattr(cached, "cache_clear")
)


def _drop_inexact_keys(cache: dict[object, object]) -> None:
    for key in [key for key in cache if type(key) is not str]:
        del cache[key]


def forget_call_state() -> None:
    """Drop from the vetted modules' caches whatever the last call may have pinned there."""
    for clear in _TEMPLATE_CACHES:
        clear()
    formats = _strptime._regex_cache
    if formats:
        _drop_inexact_keys(formats)
