"""YAML from people we do not trust: SafeLoader without aliases.

An alias (`*name`) repeats what its anchor holds without repeating its text, so a few
hundred bytes of nested aliases become billions of values as soon as anything walks or
serializes them ("billion laughs"). Import files and examples never need them; they are
refused while the text is composed, before anything is built.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import ComposerError

ALIAS_REFUSED = "aliases (*name) are not accepted; write the value out"


class NoAliasLoader(yaml.SafeLoader):
    """yaml.SafeLoader that raises ComposerError (a yaml.YAMLError) at the first alias."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        """Refuses an alias event; composes anything else as SafeLoader does."""
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise ComposerError(None, None, ALIAS_REFUSED, mark)
        return super().compose_node(parent, index)


def load_untrusted(text: str) -> Any:
    """The document in `text`, built by NoAliasLoader; yaml.YAMLError when it is not YAML
    or uses an alias."""
    return yaml.load(text, Loader=NoAliasLoader)


def compose_untrusted(text: str) -> yaml.Node | None:
    """The node tree of `text` (for line numbers), with the same refusal of aliases."""
    return yaml.compose(text, Loader=NoAliasLoader)
