"""Name patterns of cluster files: a node or domain name such as ``su{index//32}`` or
``{pool}-{index:03d}``, parsed once and rendered for every node of a pool."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

_FIELD = re.compile(r"\{([^{}]*)\}")
_EXPRESSION = re.compile(r"^\s*([a-z_]+)\s*((?:(?://|[%*+-])\s*\d+\s*)*)(?::([^{}]*))?$")
_OPERATION = re.compile(r"(//|[%*+-])\s*(\d+)")
PATTERN_VARIABLES = ("index", "node", "pool")
"""``index``: position in the pool; ``node``: position in the cluster; ``pool``: pool name."""
_OPERATIONS: dict[str, Callable[[int, int], int]] = {
    "//": lambda a, b: a // b,
    "%": lambda a, b: a % b,
    "*": lambda a, b: a * b,
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
}


class PatternError(ValueError):
    """A malformed name pattern such as ``su{index//}``."""


@dataclass(frozen=True)
class NamePattern:
    """A node or domain name such as ``su{index//32}`` or ``{pool}-{index:03d}``: literal text
    with ``{variable[op int]...[:format]}`` fields, evaluated left to right."""

    parts: tuple[str | tuple[str, tuple[tuple[str, int], ...], str], ...]

    @classmethod
    def parse(cls, text: str) -> NamePattern:
        parts: list[str | tuple[str, tuple[tuple[str, int], ...], str]] = []
        pos = 0
        for match in _FIELD.finditer(text):
            parts.append(_literal(text[pos : match.start()]))
            parts.append(_field(match.group(1)))
            pos = match.end()
        parts.append(_literal(text[pos:]))
        return cls(tuple(p for p in parts if p != ""))

    def render(self, index: int, node: int, pool: str) -> str:
        values: dict[str, int | str] = {"index": index, "node": node, "pool": pool}
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            variable, operations, spec = part
            value = values[variable]
            for op, operand in operations:
                value = _OPERATIONS[op](value, operand)  # type: ignore[arg-type]
            out.append(format(value, spec))
        return "".join(out)


def _literal(text: str) -> str:
    if "{" in text or "}" in text:
        raise PatternError(f"unbalanced brace in {text!r}")
    return text


def _field(body: str) -> tuple[str, tuple[tuple[str, int], ...], str]:
    match = _EXPRESSION.match(body)
    if not match:
        raise PatternError(
            f"cannot read field {{{body}}}; write {{index}}, {{index//32}}, {{node%4}} "
            "or {pool}, optionally with a format such as {index:03d}"
        )
    variable, ops_text, spec = match.group(1), match.group(2), match.group(3) or ""
    if variable not in PATTERN_VARIABLES:
        raise PatternError(
            f"unknown variable {variable!r}; expected one of {', '.join(PATTERN_VARIABLES)}"
        )
    operations = tuple((op, int(n)) for op, n in _OPERATION.findall(ops_text))
    if variable == "pool" and operations:
        raise PatternError("arithmetic applies to index and node, not to pool")
    if any(op in ("//", "%") and n == 0 for op, n in operations):
        raise PatternError("division by zero")
    sample: int | str = "pool" if variable == "pool" else 0
    try:
        format(sample, spec)
    except ValueError as exc:
        raise PatternError(f"bad format {spec!r}: {exc}") from None
    return variable, operations, spec
