"""The cluster's node names as an open-addressing hash table over their bytes, so that the
names of a :class:`~extender.node_list.NodeNameList` map to node indices in one compiled pass
over the request (no Python string per name, no dict lookup per name).

The list's scan has hashed every name already (:mod:`extender.name_bytes`); the table is
built by the same scan over the cluster's names, so both sides hash alike. A slot whose tag
matches leads to the name's record, whose bytes confirm the hit, so the answer is exact
whatever the hash does. Names are probed in list order (sorting them into slot order first
cost more than it saved), and the same pass marks the offered nodes. Built once per cluster
view (a few milliseconds for 10,000 nodes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit
from phalanx.extender.name_bytes import name_word, words_for
from phalanx.extender.node_list import NodeNameList

LOAD_FACTOR_INVERSE = 2
"""Slots per name (at least): probes stay short."""
EMPTY = np.uint64(0xFFFFFFFFFFFFFFFF)
VACANT = -1
UNKNOWN = -1
NOT_PLAIN_CHARACTERS = '"\\'
LOW_HALF = np.uint64(0xFFFFFFFF)
HALF_SHIFT = np.uint64(32)
"""A slot holds the top half of its name's hash (the tag) above where the name's record
starts; a record is one word (length above node index) followed by the name's words. One read
settles almost every probe, and a matching tag leads to one record, usually one cache line."""


@njit(cache=True)
def _build(
    blob: np.ndarray, spans: np.ndarray, hashes: np.ndarray, nodes: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(slots, records)``; the records lie in the order of their slots, so that a slot and
    its record are near each other in memory."""
    mask = np.uint64(size - 1)
    entry_at = np.full(size, VACANT, dtype=np.int64)
    total = 0
    for k in range(hashes.shape[0]):
        j = hashes[k] & mask
        while entry_at[j] != VACANT:
            j = (j + np.uint64(1)) & mask
        entry_at[j] = k
        total += 1 + words_for(spans[k, 1] - spans[k, 0])
    slots = np.full(size, EMPTY, dtype=np.uint64)
    records = np.empty(total, dtype=np.uint64)
    at = 0
    for j in range(size):
        k = entry_at[j]
        if k == VACANT:
            continue
        start, length = spans[k, 0], spans[k, 1] - spans[k, 0]
        slots[j] = (hashes[k] >> HALF_SHIFT << HALF_SHIFT) | np.uint64(at)
        records[at] = (np.uint64(length) << HALF_SHIFT) | np.uint64(nodes[k])
        for w in range(words_for(length)):
            records[at + 1 + w] = name_word(blob, start, length, w)
        at += 1 + words_for(length)
    return slots, records


@njit(cache=True)
def _resolve(
    buf: np.ndarray,
    spans: np.ndarray,
    hashes: np.ndarray,
    records: np.ndarray,
    slots: np.ndarray,
    n_nodes: int,
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """``(found, offered, unknown, distinct)``: node index per listed name (``UNKNOWN`` when
    not in the cluster), per node whether it is listed, how many names are unknown and how
    many nodes are listed."""
    count = spans.shape[0]
    found = np.empty(count, dtype=np.int64)
    offered = np.zeros(n_nodes, dtype=np.bool_)
    mask = np.uint64(slots.shape[0] - 1)
    unknown = 0
    distinct = 0
    for k in range(count):
        h = hashes[k]
        tag = h >> HALF_SHIFT
        start = spans[k, 0]
        length = spans[k, 1] - start
        j = h & mask
        node = UNKNOWN
        while slots[j] != EMPTY:
            slot = slots[j]
            j = (j + np.uint64(1)) & mask
            if slot >> HALF_SHIFT != tag:
                continue
            at = slot & LOW_HALF
            header = records[at]
            if header >> HALF_SHIFT != np.uint64(length):
                continue
            same = True
            for w in range(words_for(length)):
                if name_word(buf, start, length, w) != records[at + np.uint64(1 + w)]:
                    same = False
                    break
            if same:
                node = np.int64(header & LOW_HALF)
                break
        found[k] = node
        if node == UNKNOWN:
            unknown += 1
        elif not offered[node]:
            offered[node] = True
            distinct += 1
    return found, offered, unknown, distinct


@dataclass(frozen=True)
class ResolvedNames:
    """A list's names as node indices."""

    found: np.ndarray
    """Node index of each listed name, ``UNKNOWN`` (-1) for names not in the cluster."""
    offered: np.ndarray
    """Per cluster node: is it listed."""
    unknown: int
    """How many listed names are not in the cluster."""
    distinct: int
    """How many cluster nodes are listed."""


def _is_plain(name: str) -> bool:
    """Could the name appear in a plain list (:mod:`extender.node_list`) at all: printable
    ASCII (``isprintable`` is exactly 0x20..0x7E there), no quote, no backslash."""
    return (
        name.isascii() and name.isprintable() and not any(c in name for c in NOT_PLAIN_CHARACTERS)
    )


class NodeNameTable:
    """Node name bytes -> node index for one cluster view. Names that no plain list can hold
    are left out: a list that names them is decoded name by name instead."""

    def __init__(self, names: Sequence[str]) -> None:
        self.n_nodes = len(names)
        plain = [i for i, name in enumerate(names) if _is_plain(name)]
        listed = NodeNameList.parse(("[" + ",".join(f'"{names[i]}"' for i in plain) + "]").encode())
        assert listed is not None, "plain names always scan as a plain list"
        size = 1 << max(1, LOAD_FACTOR_INVERSE * len(plain) - 1).bit_length()
        self._slots, self._records = _build(
            np.frombuffer(listed.raw, dtype=np.uint8),
            listed.spans,
            listed.hashes,
            np.asarray(plain, dtype=np.int64),
            size,
        )

    def resolve(self, names: NodeNameList) -> ResolvedNames:
        """Every listed name as a node index, and which nodes the list offers."""
        found, offered, unknown, distinct = _resolve(
            np.frombuffer(names.raw, dtype=np.uint8),
            names.spans,
            names.hashes,
            self._records,
            self._slots,
            self.n_nodes,
        )
        return ResolvedNames(found, offered, unknown, distinct)
