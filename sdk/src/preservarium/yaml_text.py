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


# libyaml's parser and composer, when PyYAML was built with it: ten times faster than
# the pure Python ones on large files. Its composer is C, so aliases are found afterwards,
# in the node graph, where an alias is a node reached a second time.
_FastLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def compose_untrusted(text: str) -> yaml.Node | None:
    """The node tree of `text` (it knows each value's line); yaml.YAMLError when it is
    not YAML or uses an alias."""
    node = yaml.compose(text, Loader=_FastLoader)
    if node is not None:
        _refuse_aliases(node)
    return node


def construct_untrusted(node: yaml.Node | None) -> Any:
    """The Python value of a tree from compose_untrusted, as yaml.safe_load builds it."""
    if node is None:
        return None
    return _FastLoader("").construct_document(node)


def _refuse_aliases(root: yaml.Node) -> None:
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            raise ComposerError(None, None, ALIAS_REFUSED, node.start_mark)
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            stack.extend(item for pair in node.value for item in pair)
