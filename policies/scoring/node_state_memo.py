"""Per-node values of a pure function of a node's state, kept while that state is unchanged.

A scorer such as FGD evaluates every candidate node for every pod, but a placement changes one
node (or a few): the expected fragmentation of every other node, before and after each request
shape, is the same as last time. :class:`NodeStateMemo` remembers the state each node was last
seen in (free milli per GPU, free cpu, free memory, GPU model row) and, per key (a request
shape), the value computed for each node and the node's state version it was computed at. Only
nodes whose state differs from the remembered one are computed again, so the answers are
exactly those of computing every node every time.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable

import numpy as np

MEMO_BUDGET_BYTES = 32 * 1024 * 1024
"""Memory for the remembered values of all keys together (a value and a stamp, 16 bytes, per
node and key); the least recently used key is dropped beyond it."""
BYTES_PER_NODE_AND_KEY = 16
MIN_KEYS = 16
UNSEEN = -1
"""State entries of nodes not seen yet (no real free amount is negative)."""

Compute = Callable[[np.ndarray], np.ndarray]
"""Values for the positions (a boolean mask over the ``nodes`` asked about) that are stale."""


class NodeStateMemo:
    def __init__(self, n_nodes: int, gpus_per_node: int) -> None:
        self.shape = (n_nodes, gpus_per_node)
        self._free = np.full((n_nodes, gpus_per_node), UNSEEN, dtype=np.int64)
        self._cpu = np.full(n_nodes, UNSEEN, dtype=np.int64)
        self._memory = np.full(n_nodes, UNSEEN, dtype=np.int64)
        self._row = np.full(n_nodes, UNSEEN, dtype=np.int64)
        self._version = np.zeros(n_nodes, dtype=np.int64)
        self._entries: OrderedDict[Hashable, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self.max_keys = max(MIN_KEYS, MEMO_BUDGET_BYTES // (BYTES_PER_NODE_AND_KEY * n_nodes))

    def observe(
        self,
        nodes: np.ndarray,
        free: np.ndarray,
        cpu: np.ndarray,
        memory: np.ndarray,
        row: np.ndarray,
    ) -> None:
        """Record the current state of ``nodes``; a node whose state changed gets a new
        version, which makes every value remembered for it stale."""
        changed = (
            (self._free[nodes] != free).any(axis=1)
            | (self._cpu[nodes] != cpu)
            | (self._memory[nodes] != memory)
            | (self._row[nodes] != row)
        )
        if not changed.any():
            return
        moved = nodes[changed]
        self._free[moved] = free[changed]
        self._cpu[moved] = cpu[changed]
        self._memory[moved] = memory[changed]
        self._row[moved] = row[changed]
        self._version[moved] += 1

    def values(self, key: Hashable, nodes: np.ndarray, compute: Compute) -> np.ndarray:
        """The values of ``key`` for ``nodes`` (observed first), computing only stale ones."""
        entry = self._entries.get(key)
        if entry is None:
            entry = (np.zeros(self.shape[0]), np.full(self.shape[0], UNSEEN, dtype=np.int64))
            self._entries[key] = entry
            if len(self._entries) > self.max_keys:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        values, stamps = entry
        version = self._version[nodes]
        stale = stamps[nodes] != version
        if stale.any():
            values[nodes[stale]] = compute(stale)
            stamps[nodes[stale]] = version[stale]
        return values[nodes]
