"""A request's ``NodeNames`` kept as the JSON array it arrived in.

Decoding 10,000 names into Python strings, checking each and looking each up in a dict costs
more than planning a member. kube-scheduler writes the list compactly (``["a","b"]``) and node
names are DNS names, so one compiled pass over the bytes can check that the array holds plain
strings (printable ASCII, no quote or escape inside a name) and find where every name lies;
:class:`~extender.node_table.NodeNameTable` then maps those spans to node indices. The strings
themselves are decoded only where a reply lists them (rejections, prioritize scores).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import cached_property
from typing import overload

import numpy as np
import orjson
from numba import njit

OPEN_BRACKET = ord("[")
CLOSE_BRACKET = ord("]")
QUOTE = ord('"')
COMMA = ord(",")
BACKSLASH = ord("\\")
FIRST_PLAIN_BYTE = 0x20
LAST_PLAIN_BYTE = 0x7E
"""Printable ASCII: what JSON lets a string hold unescaped and one byte decodes to one
character, so the bytes between two quotes are the name."""
NOT_PLAIN = -1


@njit(cache=True)
def plain_string_spans(buf: np.ndarray) -> tuple[int, np.ndarray]:
    """``(count, spans)`` where ``spans[k] = (start, end)`` of the k-th string's bytes, when
    ``buf`` is exactly ``[]`` or ``["...","..."]`` with plain characters; else count -1."""
    n = buf.shape[0]
    spans = np.empty((n // 3 + 1, 2), dtype=np.int64)
    if n < 2 or buf[0] != OPEN_BRACKET or buf[n - 1] != CLOSE_BRACKET:
        return NOT_PLAIN, spans
    if n == 2:
        return 0, spans
    count = 0
    i = 1
    while True:
        if buf[i] != QUOTE:
            return NOT_PLAIN, spans
        start = i + 1
        i = start
        while i < n - 1 and buf[i] != QUOTE:
            c = buf[i]
            if c < FIRST_PLAIN_BYTE or c > LAST_PLAIN_BYTE or c == BACKSLASH:
                return NOT_PLAIN, spans
            i += 1
        if i >= n - 1:
            return NOT_PLAIN, spans
        spans[count, 0] = start
        spans[count, 1] = i
        count += 1
        i += 1
        if i == n - 1:
            return count, spans
        if buf[i] != COMMA:
            return NOT_PLAIN, spans
        i += 1


class NodeNameList(Sequence[str]):
    """The names of a compact JSON array of plain strings, decoded on first use; read-only."""

    def __init__(self, raw: bytes, spans: np.ndarray) -> None:
        self.raw = raw
        self.spans = spans
        """``(start, end)`` of each name's bytes in ``raw``."""

    @classmethod
    def parse(cls, raw: bytes) -> NodeNameList | None:
        """The list, or None when ``raw`` is not a compact array of plain strings (the caller
        then decodes it as any JSON)."""
        count, spans = plain_string_spans(np.frombuffer(raw, dtype=np.uint8))
        if count == NOT_PLAIN:
            return None
        return cls(raw, spans[:count])

    @cached_property
    def names(self) -> list[str]:
        return orjson.loads(self.raw)

    def __len__(self) -> int:
        return len(self.spans)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return self.names[index]
        start, end = self.spans[index]
        return self.raw[start:end].decode("ascii")

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, NodeNameList):
            return self.raw == other.raw
        if isinstance(other, list):
            return self.names == other
        return NotImplemented

    def __repr__(self) -> str:
        return f"NodeNameList({len(self)} names)"
