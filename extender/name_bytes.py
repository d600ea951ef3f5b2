"""Node names read eight bytes at a time: the word primitives that the node-list scanner
(:mod:`extender.node_list`) and the name table (:mod:`extender.node_table`) share.

A 10,000-name list is about 130 KB and every filter request carries a fresh one (kube-scheduler
returns its feasible nodes in completion order), so the per-byte work bounds the request. Words
are loaded unaligned (LLVM merges the byte loads below into one load when the index is
unsigned), the bytes past a name zeroed, and folded into a 64-bit hash of the name, one
multiply per word.
"""

from __future__ import annotations

import numpy as np
from numba import njit

WORD_BYTES = 8
BITS_PER_BYTE = 8
HASH_SEED = np.uint64(0x9E3779B97F4A7C15)
HASH_MULTIPLIER = np.uint64(0xFF51AFD7ED558CCD)
MIX_MULTIPLIER = np.uint64(0xC4CEB9FE1A85EC53)
MIX_SHIFT = np.uint64(33)
"""MurmurHash3's 64-bit finaliser: it folds the high bits of the product into the low bits
that pick a table slot."""


@njit(cache=True)
def load_word(buf: np.ndarray, at: int) -> np.uint64:
    """The 8 bytes from ``at`` (``at + 8 <= len(buf)``), little-endian: byte ``at`` lowest.

    Kept free of branches so that it compiles to one load and costs no reference counting
    where it is inlined; callers near the end of a buffer use :func:`load_tail`."""
    start = np.uint64(at)
    word = np.uint64(0)
    for k in range(WORD_BYTES):
        word |= np.uint64(buf[start + np.uint64(k)]) << np.uint64(BITS_PER_BYTE * k)
    return word


@njit(cache=True)
def load_tail(buf: np.ndarray, at: int) -> np.uint64:
    """The bytes from ``at`` to the end of ``buf`` (fewer than 8) as :func:`load_word` reads
    them, the missing bytes zero."""
    start = np.uint64(at)
    word = np.uint64(0)
    for k in range(buf.shape[0] - at):
        word |= np.uint64(buf[start + np.uint64(k)]) << np.uint64(BITS_PER_BYTE * k)
    return word


@njit(cache=True)
def hash_step(h: np.uint64, word: np.uint64) -> np.uint64:
    return (h ^ word) * HASH_MULTIPLIER


@njit(cache=True)
def hash_finish(h: np.uint64, length: int) -> np.uint64:
    """The name's hash from its words (the last one zero-padded) and its length."""
    h ^= np.uint64(length)
    h ^= h >> MIX_SHIFT
    h *= MIX_MULTIPLIER
    h ^= h >> MIX_SHIFT
    return h


@njit(cache=True)
def name_word(buf: np.ndarray, start: int, length: int, w: int) -> np.uint64:
    """Word ``w`` of the name ``buf[start:start + length]``, its bytes past the name zero: the
    form in which names are hashed and stored (:mod:`extender.node_table`)."""
    at = start + WORD_BYTES * w
    word = load_word(buf, at) if at + WORD_BYTES <= buf.shape[0] else load_tail(buf, at)
    left = length - WORD_BYTES * w
    if left < WORD_BYTES:
        word &= (np.uint64(1) << np.uint64(BITS_PER_BYTE * left)) - np.uint64(1)
    return word


@njit(cache=True)
def words_for(length: int) -> int:
    """How many words a name of ``length`` bytes takes."""
    return (length + WORD_BYTES - 1) // WORD_BYTES
