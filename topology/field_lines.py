"""Where each field of a YAML (or JSON) document is, read without letting its shape hang or crash
the reader.

A YAML alias may refer to a node that contains it (``a: &x [*x]``), or a few lines of aliases
may stand for billions of values (each list repeating the one before ten times). The parser
builds such documents cheaply, as shared or self-referencing objects, but every walk over them
afterwards (this one, and each validator's) never ends or recurses until Python gives up. So
the walk here, which visits the document first, is iterative and counts the values it meets a
second time through an alias: past :data:`MAX_ALIAS_VISITS` the document is refused with its
line, before any validator sees it.
"""

from __future__ import annotations

import yaml
from phalanx.topology.fields import join

MAX_ALIAS_VISITS = 100_000
"""Values reached again through aliases; a real file shares a few blocks, far below this."""
MAX_DEPTH = 200
"""Nesting levels: a cluster file or a Node list has about ten. A list that contains itself is
also this deep long before MAX_ALIAS_VISITS, with a path as long as its depth at every step."""
COMPLEX_KEY = "<complex key>"
"""The path step of a mapping key that is itself a list or mapping (no field has one)."""


class DocumentShapeError(ValueError):
    """A document whose aliases refer to themselves or expand without bound."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


def field_lines(root: yaml.Node | None) -> tuple[dict[str, int], list[str]]:
    """Line of every field path under ``root``, and the paths given twice, in document order.

    Raises :class:`DocumentShapeError` when aliases reach more than MAX_ALIAS_VISITS values or
    the document nests deeper than MAX_DEPTH."""
    lines: dict[str, int] = {}
    duplicates: list[str] = []
    seen: set[int] = set()
    again = 0
    stack: list[tuple[yaml.Node, str, int]] = [(root, "", 0)] if root is not None else []
    while stack:
        node, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise DocumentShapeError(
                f"nested deeper than {MAX_DEPTH} levels (or a YAML alias refers to itself)",
                node.start_mark.line + 1,
            )
        if id(node) in seen:
            again += 1
            if again > MAX_ALIAS_VISITS:
                raise DocumentShapeError(
                    f"YAML aliases refer to themselves or repeat more than {MAX_ALIAS_VISITS} "
                    "values",
                    node.start_mark.line + 1,
                )
        seen.add(id(node))
        lines.setdefault(path, node.start_mark.line + 1)
        children: list[tuple[yaml.Node, str, int]] = []
        if isinstance(node, yaml.MappingNode):
            keys = set()
            for key, value in node.value:
                step = str(key.value) if isinstance(key, yaml.ScalarNode) else COMPLEX_KEY
                sub = join(path, step)
                if sub in keys:
                    duplicates.append(sub)
                keys.add(sub)
                lines[sub] = key.start_mark.line + 1
                children.append((value, sub, depth + 1))
        elif isinstance(node, yaml.SequenceNode):
            children = [(item, join(path, i), depth + 1) for i, item in enumerate(node.value)]
        stack.extend(reversed(children))
    return lines, duplicates
