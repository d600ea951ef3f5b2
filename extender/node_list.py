"""A request's ``NodeNames`` kept as the JSON array it arrived in.

Decoding 10,000 names into Python strings, checking each and looking each up in a dict costs
more than planning a member. kube-scheduler writes the list compactly (``["a","b"]``) and node
names are DNS names, so compiled passes over the bytes can check that the array holds plain
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
    BITS_PER_BYTE,
    HASH_SEED,
    WORD_BYTES,
    hash_finish,
    hash_step,
    load_tail,
    load_word,
)
from phalanx.scheduler.kernels import popcount

OPEN_BRACKET = ord("[")
CLOSE_BRACKET = ord("]")
QUOTE = ord('"')
COMMA = ord(",")
BACKSLASH = ord("\\")
FIRST_PLAIN_BYTE = 0x20
LAST_PLAIN_BYTE = 0x7E
"""Printable ASCII: what JSON lets a string hold unescaped and one byte decodes to one
character, so the bytes between two quotes are the name."""
HALF_BITS = np.uint64(32)
NOT_PLAIN = -1
BITMAP_BITS = 64
"""Bytes per word of the quote bitmap."""
ONE = np.uint64(1)


@njit(cache=True)
def scan_names(buf: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """``(count, spans, hashes)`` where ``spans[k] = (start, end)`` of the k-th string's bytes
    and ``hashes[k]`` its name hash, when ``buf`` is exactly ``[]`` or ``["...","..."]`` with
    plain characters; else count -1.

    Three passes, each free of the others' dependencies: one that every byte is plain (the
    structure's bytes are, so this is every name's bytes), one that marks the quotes in a
    bitmap, and one that walks the quotes in pairs, checks that exactly a comma separates a
    name from the next, and hashes each name a word at a time. A single pass that found each
    quote inside its name's words made the next name's start wait on the last one's words;
    about 15 % slower on 10,000 names."""
    n = buf.shape[0]
    capacity = n // 3 + 1
    spans = np.empty((capacity, 2), dtype=np.int64)
    hashes = np.empty(capacity, dtype=np.uint64)
    if n < 2 or buf[0] != OPEN_BRACKET or buf[n - 1] != CLOSE_BRACKET:
        return NOT_PLAIN, spans, hashes
    if n == 2:
        return 0, spans, hashes
    if not _all_plain(buf):
        return NOT_PLAIN, spans, hashes
    quotes = _quote_bitmap(buf)
    count, start, expected = 0, 0, 1
    opening = True
    for w in range(quotes.size):
        word = quotes[w]
        while word:
            lowest = word & (~word + ONE)
            word ^= lowest
            at = w * BITMAP_BITS + popcount(lowest - ONE)
            if opening:
                if at != expected or (count and buf[at - 1] != COMMA):
                    return NOT_PLAIN, spans, hashes
                start = at + 1
                opening = False
            else:
                # the name's hash, as name_bytes.name_word gives its words (the last one
                # zero-padded), one branch for the whole words; written here, not called:
                # as an inlined function it ran at a third of the speed
                length, h, word_at = at - start, HASH_SEED, start
                for _ in range(length // WORD_BYTES):
                    h = hash_step(h, load_word(buf, word_at))
                    word_at += WORD_BYTES
                left = length % WORD_BYTES
                if left:
                    tail = (
                        load_word(buf, word_at)
                        if word_at + WORD_BYTES <= n
                        else load_tail(buf, word_at)
                    )
                    h = hash_step(h, tail & ((ONE << np.uint64(BITS_PER_BYTE * left)) - ONE))
                spans[count, 0] = start
                spans[count, 1] = at
                hashes[count] = hash_finish(h, length)
                count += 1
                expected = at + 2
                opening = True
    if opening and expected == n:  # the last name's quote is right before the bracket
        return count, spans, hashes
    return NOT_PLAIN, spans, hashes


@njit(cache=True)
def _all_plain(buf: np.ndarray) -> bool:
    """No byte outside printable ASCII and no backslash (a loop the compiler vectorises)."""
    bad = False
    for i in range(buf.shape[0]):
        byte = buf[i]
        bad |= (byte < FIRST_PLAIN_BYTE) | (byte > LAST_PLAIN_BYTE) | (byte == BACKSLASH)
    return not bad


@njit(cache=True)
def _quote_bitmap(buf: np.ndarray) -> np.ndarray:
    """Bit ``i % 64`` of word ``i // 64`` set where byte ``i`` is a quote."""
    n = buf.shape[0]
    out = np.zeros((n + BITMAP_BITS - 1) // BITMAP_BITS, dtype=np.uint64)
    whole = n // BITMAP_BITS
    for w in range(whole):
        bits = np.uint64(0)
        base = w * BITMAP_BITS
        for k in range(BITMAP_BITS):
            bits |= np.uint64(buf[base + k] == QUOTE) << np.uint64(k)
        out[w] = bits
    for i in range(whole * BITMAP_BITS, n):
        if buf[i] == QUOTE:
            out[whole] |= np.uint64(1) << np.uint64(i - whole * BITMAP_BITS)
    return out


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
