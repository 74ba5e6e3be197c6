"""YAML as an experiment file may hold it: plain data, bounded, unambiguous.

``yaml.safe_load`` builds plain data only, but it still accepts three things an
experiment file must not hold:

* a duplicate key (two ``search:`` sections, ``trials`` twice): PyYAML keeps the last
  without a word; here it is an error naming both lines;
* an alias bomb (``a: &a [1,1]``, ``b: &b [*a,*a]``, ... nine levels): the parsed graph
  is small, but every reader that walks it (validation, ``json.dumps`` into run.json)
  expands it to billions of nodes. The expanded size is counted on the composed node
  graph, before anything is constructed, and bounded by ``MAX_NODES``;
* a giant (a 50 MB file, a list of a million choices): files over ``MAX_BYTES`` are
  refused before parsing, sequences over ``MAX_ITEMS`` items while composing.

Every refusal is a ``yaml.YAMLError`` carrying the line, so the caller reports it like
a syntax error: one line naming the file and the line, in well under a second.
"""
from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = ["safe_load", "MAX_BYTES", "MAX_ITEMS", "MAX_NODES"]

MAX_BYTES = 1024 * 1024          # an experiment file is a few kilobytes
MAX_ITEMS = 10_000               # a choice list, a list of baselines
MAX_NODES = 100_000              # values after alias expansion


class _Loader(yaml.SafeLoader):
    """SafeLoader that bounds sequences and alias expansion and refuses duplicate keys."""

    def compose_sequence_node(self, anchor):
        node = super().compose_sequence_node(anchor)
        if len(node.value) > MAX_ITEMS:
            raise yaml.MarkedYAMLError(problem=f"a list of {len(node.value)} items (at most {MAX_ITEMS})",
                                       problem_mark=node.start_mark)
        return node

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None:
            size = _expanded_size(node)
            if size > MAX_NODES:
                raise yaml.MarkedYAMLError(
                    problem=f"aliases expand to more than {MAX_NODES} values (a YAML alias bomb?)",
                    problem_mark=node.start_mark)
        return node

    def construct_mapping(self, node, deep=False):
        if isinstance(node, MappingNode):
            _refuse_duplicates(self, node)
        return super().construct_mapping(node, deep=deep)


def _expanded_size(root: Node) -> int:
    """Nodes of ``root`` with every alias expanded, counted once per shared node
    (memoised, iterative): linear in the composed graph, however large the expansion."""
    sizes: dict[int, int] = {}
    stack: list[tuple[Node, bool]] = [(root, False)]
    on_stack: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if children_done:
            sizes[id(node)] = min(1 + sum(sizes.get(id(c), 1) for c in children), MAX_NODES + 1)
            on_stack.discard(id(node))
            continue
        if id(node) in on_stack:         # a recursive alias: counted as one
            sizes[id(node)] = 1
            continue
        on_stack.add(id(node))
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes[id(root)]


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _refuse_duplicates(loader: _Loader, node: MappingNode) -> None:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node)
        try:
            first = seen.setdefault(key, key_node.start_mark.line + 1)
        except TypeError:               # an unhashable key: construct_mapping says so
            continue
        if first != key_node.start_mark.line + 1:
            raise ConstructorError(problem=f"duplicate key {key!r} (first at line {first}); the second "
                                           "would silently replace the first",
                                   problem_mark=key_node.start_mark)


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` with the bounds of the module docstring."""
    if len(text) > MAX_BYTES:
        raise yaml.YAMLError(f"the file is larger than {MAX_BYTES // 1024} KB; an experiment file is a few KB")
    loader = _Loader(text)            # what yaml.load does, with our SafeLoader
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
