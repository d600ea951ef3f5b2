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
from phalanx.extender.name_bytes import (
    HASH_SEED,
    HIGH_BITS,
    ONES,
    WORD_BYTES,
    byte_count,
    bytes_before,
    bytes_below,
    hash_finish,
    hash_step,
    load_tail,
    load_word,
    zero_bytes,
)

OPEN_BRACKET = ord("[")
CLOSE_BRACKET = ord("]")
QUOTE = ord('"')
COMMA = ord(",")
BACKSLASH = ord("\\")
FIRST_PLAIN_BYTE = 0x20
LAST_PLAIN_BYTE = 0x7E
"""Printable ASCII: what JSON lets a string hold unescaped and one byte decodes to one
character, so the bytes between two quotes are the name."""
DELETE_BYTE = LAST_PLAIN_BYTE + 1
HALF_BITS = np.uint64(32)
NOT_PLAIN = -1
QUOTES = ONES * np.uint64(QUOTE)
BACKSLASHES = ONES * np.uint64(BACKSLASH)
DELETES = ONES * np.uint64(DELETE_BYTE)


@njit(cache=True)
def scan_names(buf: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """``(count, spans, hashes)`` where ``spans[k] = (start, end)`` of the k-th string's bytes
    and ``hashes[k]`` its name hash, when ``buf`` is exactly ``[]`` or ``["...","..."]`` with
    plain characters; else count -1. One pass, a word at a time: each word's first quote ends
    the name, and a byte that is not plain before it rejects the list."""
    n = buf.shape[0]
    capacity = n // 3 + 1
    spans = np.empty((capacity, 2), dtype=np.int64)
    hashes = np.empty(capacity, dtype=np.uint64)
    if n < 2 or buf[0] != OPEN_BRACKET or buf[n - 1] != CLOSE_BRACKET:
        return NOT_PLAIN, spans, hashes
    if n == 2:
        return 0, spans, hashes
    count = 0
    i = 1
    while True:
        if buf[i] != QUOTE:
            return NOT_PLAIN, spans, hashes
        start = i + 1
        i = start
        h = HASH_SEED
        while True:
            word = load_word(buf, i) if i + WORD_BYTES <= n else load_tail(buf, i)
            quotes = zero_bytes(word ^ QUOTES)
            bad = (
                (word & HIGH_BITS)
                | bytes_below(word, FIRST_PLAIN_BYTE)
                | zero_bytes(word ^ BACKSLASHES)
                | zero_bytes(word ^ DELETES)
            )
            before = bytes_before(quotes)
            if bad & before:
                return NOT_PLAIN, spans, hashes
            if quotes == 0:
                h = hash_step(h, word)
                i += WORD_BYTES
                continue
            if before:
                h = hash_step(h, word & before)
            i += byte_count(before)
            break
        # the last byte is the closing bracket, so a quote found is never past it
        spans[count, 0] = start
        spans[count, 1] = i
        hashes[count] = hash_finish(h, i - start)
        count += 1
        i += 1
        if i == n - 1:
            return count, spans, hashes
        if buf[i] != COMMA:
            return NOT_PLAIN, spans, hashes
        i += 1


@njit(cache=True)
def _hash_sums(hashes: np.ndarray) -> tuple[np.uint64, np.uint64]:
    """Sum of the hashes and sum of their remix (MurmurHash3's finaliser over the hash with
    its halves swapped), both modulo 2**64: order-free, and the second is not linear in the
    first."""
    total = np.uint64(0)
    mixed = np.uint64(0)
    for k in range(hashes.shape[0]):
        h = hashes[k]
        total += h
        mixed += hash_finish((h << HALF_BITS) | (h >> HALF_BITS), 0)
    return total, mixed


class NodeNameList(Sequence[str]):
    """The names of a compact JSON array of plain strings, decoded on first use; read-only."""

    def __init__(self, raw: bytes, spans: np.ndarray, hashes: np.ndarray) -> None:
        self.raw = raw
        self.spans = spans
        """``(start, end)`` of each name's bytes in ``raw``."""
        self.hashes = hashes
        """Each name's hash (:mod:`extender.name_bytes`), for the cluster's name table."""

    @classmethod
    def parse(cls, raw: bytes) -> NodeNameList | None:
        """The list, or None when ``raw`` is not a compact array of plain strings (the caller
        then decodes it as any JSON)."""
        count, spans, hashes = scan_names(np.frombuffer(raw, dtype=np.uint8))
        if count == NOT_PLAIN:
            return None
        return cls(raw, spans[:count], hashes[:count])

    @cached_property
    def names(self) -> list[str]:
        return orjson.loads(self.raw)

    @cached_property
    def fingerprint(self) -> tuple[int, int, int]:
        """``(count, sum, mixed sum)`` of the names' hashes, wrapping at 64 bits: the same
        for every order of the same names (:class:`~extender.masking.OfferedIndex` reads the
        offered nodes of a reordered list from the first order's). Two different lists share
        it only if 128 bits of sums of 64-bit name hashes agree."""
        total, mixed = _hash_sums(self.hashes)
        return len(self.spans), int(total), int(mixed)

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
