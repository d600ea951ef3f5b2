"""Nodes grouped by their free state, so that one member's best fit reads groups, not nodes.

A single member of whole GPUs costs the same on every node with the same GPU-choice shape,
usable GPUs, free-GPU mask and free milli-GPUs (:func:`scheduler.kernels.single_node_costs`
reads nothing else), so the exact best fit over all nodes is: the cheapest group with room,
then its lowest-index node that passes the request's static filters and has the cpu and memory.
A half-full cluster has a few hundred such groups whatever its size, so one member's placement
no longer reads every node (the compiled first fit's pass over 50,000 nodes takes about 0.4
ms).

Each group keeps its nodes as a bitmap (one bit a node), so its lowest node is the first set
bit. The groups follow the ledger through :attr:`topology.compiled.CompiledCluster.changed_nodes`
(every allocate and release appends its node): a query first moves the nodes written since the
last one, and rebuilds from the arrays when the log was started over. One set of groups per
free state (a what-if copy has its own arrays and so its own groups); it is dropped with them,
and built only at the state's third question, so a copy asked once reads every node instead.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numba import njit
from phalanx.scheduler.cluster_index import ClusterIndex
from phalanx.scheduler.cost import FRAGMENTATION_WEIGHT
from phalanx.scheduler.gang import MemberRequest
from phalanx.scheduler.kernels import MILLI_PER_GPU, cap_by_cpu_memory, popcount
from phalanx.topology.compiled import CompiledCluster

WORD_BITS = 64
MAX_BITMAP_BYTES = 64 << 20
"""Bitmaps held for one free state: past this (many distinct fractional states) the groups
are not kept and the caller reads every node."""
NO_NODE = -1
BUILD_AFTER_QUERIES = 3
"""Questions about one free state before its nodes are grouped."""
FIRST_GROUPS = 64
"""Fewest group rows allocated; twice the groups seen at a rebuild, which runs again when
new groups fill them."""


def _node_keys(compiled: CompiledCluster, index: ClusterIndex, nodes: np.ndarray) -> np.ndarray:
    """int64 [len(nodes), 4]: choice shape, free-GPU mask (bits), free and usable milli-GPUs."""
    return _keys_of(
        nodes,
        index.choice_shape,
        compiled.free_gpu_mask,
        compiled.gpu_used_milli,
        compiled.gpu_usable,
    )


@njit(cache=True)
def _keys_of(
    nodes: np.ndarray,
    choice_shape: np.ndarray,
    free_gpu_mask: np.ndarray,
    gpu_used_milli: np.ndarray,
    gpu_usable: np.ndarray,
) -> np.ndarray:
    out = np.empty((nodes.size, 4), dtype=np.int64)
    for k in range(nodes.size):
        i = nodes[k]
        free = 0
        capacity = 0
        for g in range(gpu_used_milli.shape[1]):
            if gpu_usable[i, g]:
                capacity += MILLI_PER_GPU
                free += MILLI_PER_GPU - gpu_used_milli[i, g]
        out[k, 0] = choice_shape[i]
        out[k, 1] = np.int64(free_gpu_mask[i])
        out[k, 2] = free
        out[k, 3] = capacity
    return out


PACKED_FIELD_BITS = (15, 16, 14, 14)
"""Bits of a key's columns packed into one int64 (shape + 1, mask, free and usable milli-GPUs),
enough for nodes of up to 16 GPUs."""


@dataclass(frozen=True)
class GroupKey:
    """What the nodes are grouped by: ``keys_of(compiled, index, nodes)`` gives int64
    [len(nodes), columns] (read again for the nodes each ledger write touched); each column
    plus its ``offsets`` entry fits ``packed_bits`` bits for the regrouping's one sort.
    ``key_of_node``, where given, is one node's key as a tuple without the arrays (the usual
    catch-up is one node: a ledger write between two questions)."""

    name: str
    keys_of: Callable[[CompiledCluster, ClusterIndex, np.ndarray], np.ndarray]
    packed_bits: tuple[int, ...]
    offsets: tuple[int, ...]
    key_of_node: Callable[[CompiledCluster, ClusterIndex, int], tuple[int, ...]] | None = None

    @property
    def columns(self) -> int:
        return len(self.packed_bits)


FREE_STATE = GroupKey("free state", _node_keys, PACKED_FIELD_BITS, (1, 0, 0, 0))
"""One member's whole-GPU cost groups (choice shape -1 is a node without GPUs)."""


def _unique_rows(rows: np.ndarray, key: GroupKey) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of ``rows`` (int64 [n, columns] keys) and each row's index among
    them: through one int64 per row where the columns fit ``key.packed_bits`` (a sort of n
    numbers, about ten times faster than ``np.unique(axis=0)``), else row-wise."""
    shifted = rows + np.array(key.offsets, dtype=np.int64)
    limits = np.left_shift(1, np.array(key.packed_bits, dtype=np.int64))
    if rows.size and (shifted.min() < 0 or (shifted >= limits).any()):
        keys, group = np.unique(rows, axis=0, return_inverse=True)
        return keys, group.reshape(-1)
    packed = np.zeros(rows.shape[0], dtype=np.int64)
    for column, bits in enumerate(key.packed_bits):
        packed = (packed << bits) | shifted[:, column]
    _, first, group = np.unique(packed, return_index=True, return_inverse=True)
    return rows[first], group.reshape(-1)


@dataclass
class FreeStateBuckets:
    """The groups of one free state (see the module docstring)."""

    n_nodes: int
    key: GroupKey = FREE_STATE
    keys: dict[tuple[int, ...], int] = field(default_factory=dict)
    key_rows: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), dtype=np.int64))
    """int64 [groups, key columns]: each group's key (:func:`_node_keys`' columns for
    :data:`FREE_STATE`)."""
    words: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.uint64))
    """uint64 [groups, ceil(nodes / 64)]: bit ``i % 64`` of word ``i // 64`` is node ``i``."""
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    node_group: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    log: list[int] | None = None
    """The ledger's change log these groups have read up to ``seen``."""
    seen: int = 0
    usable: bool = True
    """False when the groups would outgrow :data:`MAX_BITMAP_BYTES`."""

    @property
    def n_groups(self) -> int:
        return len(self.keys)

    def rebuild(self, compiled: CompiledCluster, index: ClusterIndex) -> None:
        """Regroup every node from the arrays (also drops the groups left empty)."""
        rows_of_nodes = self.key.keys_of(compiled, index, np.arange(self.n_nodes))
        keys, group = _unique_rows(rows_of_nodes, self.key)
        n_words = -(-self.n_nodes // WORD_BITS)
        rows = max(FIRST_GROUPS, 2 * keys.shape[0])
        self.log, self.seen = compiled.changed_nodes, len(compiled.changed_nodes)
        self.usable = rows * n_words * 8 <= MAX_BITMAP_BYTES
        if not self.usable:
            self.keys, self.words = {}, np.zeros((0, 0), dtype=np.uint64)
            return
        self.key_rows = np.zeros((rows, self.key.columns), dtype=np.int64)
        self.key_rows[: keys.shape[0]] = keys
        self.keys = {tuple(k): g for g, k in enumerate(keys.tolist())}
        self.words = np.zeros((rows, n_words), dtype=np.uint64)
        self.counts = np.zeros(rows, dtype=np.int64)
        self.node_group = group.reshape(-1).astype(np.int64)
        _fill_bitmaps(self.words, self.counts, self.node_group)

    def catch_up(self, compiled: CompiledCluster, index: ClusterIndex) -> None:
        """Move the nodes written since the last query; regroup everything when the log was
        started over, or when a new group would not fit the rows (which drops empty ones)."""
        log = compiled.changed_nodes
        if log is not self.log or len(log) < self.seen:
            self.rebuild(compiled, index)
            return
        if len(log) == self.seen:
            return
        one = self.key.key_of_node
        if one is not None and len(log) == self.seen + 1:
            self.seen += 1
            node = log[-1]
            if self.usable and not self._move(node, one(compiled, index, node)):
                self.rebuild(compiled, index)
            return
        nodes = list(dict.fromkeys(log[self.seen :]))
        self.seen = len(log)
        if not self.usable:
            return
        keys = self.key.keys_of(compiled, index, np.array(nodes, dtype=np.int64)).tolist()
        for node, key in zip(nodes, keys, strict=True):
            if not self._move(node, tuple(key)):
                self.rebuild(compiled, index)
                return

    def _move(self, node: int, key: tuple[int, ...]) -> bool:
        """Put ``node`` in the group of ``key``; False when that group would need a new row
        and every row is taken."""
        group = self.keys.get(key)
        if group == self.node_group[node]:
            return True
        if group is None:
            group = len(self.keys)
            if group == self.words.shape[0]:
                return False
            self.keys[key] = group
            self.key_rows[group] = key
        _move_bit(self.words, self.counts, self.node_group, node, group)
        return True


@njit(cache=True)
def _move_bit(
    words: np.ndarray, counts: np.ndarray, node_group: np.ndarray, node: int, group: int
) -> None:
    """Node ``node`` from its group's bitmap and count to ``group``'s."""
    old = node_group[node]
    bit = np.uint64(1) << np.uint64(node % WORD_BITS)
    words[old, node // WORD_BITS] &= ~bit
    words[group, node // WORD_BITS] |= bit
    counts[old] -= 1
    counts[group] += 1
    node_group[node] = group


@njit(cache=True)
def _fill_bitmaps(words: np.ndarray, counts: np.ndarray, group: np.ndarray) -> None:
    for i in range(group.size):
        g = group[i]
        words[g, i // 64] |= np.uint64(1) << np.uint64(i % 64)
        counts[g] += 1


@njit(cache=True)
def best_node_in_groups(
    key_rows: np.ndarray,
    counts: np.ndarray,
    words: np.ndarray,
    n_groups: int,
    gpus: int,
    demand_milli: int,
    eligible: np.ndarray,
    cpu_free_milli: np.ndarray,
    memory_free_mib: np.ndarray,
    cpu_milli: int,
    memory_mib: int,
    fragmentation_weight: float,
    choice_worst: np.ndarray,
    choice_penalty: np.ndarray,
    has_table: np.ndarray,
    worst_link_weight: float,
) -> tuple[int, bool]:
    """The node :func:`scheduler.kernels.best_fitting_nodes` keeps first for one member of
    ``gpus`` whole GPUs (lowest cost, then lowest index), read group by group: each group's cost
    with that kernel's arithmetic from its key, cheapest groups first, each group's lowest node
    that is ``eligible`` and has the cpu and memory. Also whether a fitting group's cost was NaN
    (the caller then ranks every node)."""
    fit = (eligible, cpu_free_milli, memory_free_mib, cpu_milli, memory_mib)
    cost = np.empty(n_groups)
    fitting = np.empty(n_groups, dtype=np.int64)
    n_fitting = 0
    for k in range(n_groups):
        shape, mask, free, capacity = key_rows[k, 0], key_rows[k, 1], key_rows[k, 2], key_rows[k, 3]
        if counts[k] == 0 or popcount(np.uint64(mask)) < gpus:
            continue
        after = free - demand_milli
        c = 0.0
        if 0 < after < capacity:
            c = fragmentation_weight * after / capacity
        if has_table[shape]:
            c += worst_link_weight * choice_worst[shape, mask] + choice_penalty[shape, mask]
        if np.isnan(c):
            return NO_NODE, True
        cost[n_fitting] = c
        fitting[n_fitting] = k
        n_fitting += 1
    order = np.argsort(cost[:n_fitting], kind="mergesort")
    best, best_cost = NO_NODE, 0.0
    for j in order:
        if best != NO_NODE and cost[j] > best_cost:
            break
        found = _lowest_member(words[fitting[j]], best, fit)
        if found != NO_NODE and (best == NO_NODE or found < best):
            best, best_cost = found, cost[j]
    return best, False


@njit(cache=True, inline="always")
def _fits(i: int, fit: tuple) -> bool:
    """Whether node ``i`` of a group with the GPUs takes one member: ``fit`` is (eligible,
    free cpu milli, free memory MiB, the member's cpu milli, its memory MiB)."""
    eligible, cpu_free_milli, memory_free_mib, cpu_milli, memory_mib = fit
    room = cap_by_cpu_memory(1, cpu_free_milli[i], memory_free_mib[i], cpu_milli, memory_mib)
    return eligible[i] and room >= 1


@njit(cache=True)
def _lowest_member(row: np.ndarray, below: int, fit: tuple) -> int:
    """The lowest node of a group's bitmap ``row`` that :func:`_fits`, looking no further than
    ``below`` (when not :data:`NO_NODE`)."""
    for w in range(row.size):
        if below != NO_NODE and w * WORD_BITS > below:
            return NO_NODE
        word = row[w]
        if not word:
            continue
        for bit in range(WORD_BITS):
            if not (word >> np.uint64(bit)) & np.uint64(1):
                continue
            i = w * WORD_BITS + bit
            if _fits(i, fit):
                return i
    return NO_NODE


@njit(cache=True)
def lowest_fitting_nodes(
    words: np.ndarray, groups: np.ndarray, ties: int, fit: tuple
) -> np.ndarray:
    """The lowest ``ties`` nodes, in index order, of the union of ``groups``' bitmaps that
    take one member (``fit`` as :func:`_fits` reads it)."""
    out = np.empty(ties, dtype=np.int64)
    found = 0
    for w in range(words.shape[1]):
        word = np.uint64(0)
        for g in groups:
            word |= words[g, w]
        while word:
            lowest = word & (~word + np.uint64(1))
            word ^= lowest
            i = w * WORD_BITS + popcount(lowest - np.uint64(1))
            if _fits(i, fit):
                out[found] = i
                found += 1
                if found == ties:
                    return out
    return out[:found]


def best_single_node(
    compiled: CompiledCluster,
    index: ClusterIndex,
    request: MemberRequest,
    eligible: np.ndarray,
    tables: tuple[np.ndarray, np.ndarray, np.ndarray],
    worst_link_weight: float,
) -> int | None:
    """The node the full pass ranks first for one member of ``request`` (whole GPUs) on the
    ``eligible`` nodes, priced with the GPU-choice ``tables``; None when the groups are not
    kept (or not yet), a fitting group's cost is NaN, or no node fits (the caller then reads
    every node)."""
    groups = free_state_buckets(compiled, index)
    if groups is None or not groups.usable:
        return None
    node, saw_nan = best_node_in_groups(
        groups.key_rows,
        groups.counts,
        groups.words,
        groups.n_groups,
        request.gpus,
        request.gpu_milli_total,
        eligible,
        compiled.cpu_free_milli,
        compiled.memory_free_mib,
        request.cpu_milli,
        request.memory_mib,
        FRAGMENTATION_WEIGHT,
        *tables,
        worst_link_weight,
    )
    return None if saw_nan or node == NO_NODE else int(node)


_BUCKETS: dict[tuple[int, str], FreeStateBuckets | int] = {}
"""Groups by free state (the id of its ``free_gpu_mask``) and grouping key, or how often a
state without groups has been asked."""


def free_state_buckets(
    compiled: CompiledCluster, index: ClusterIndex, key: GroupKey = FREE_STATE
) -> FreeStateBuckets | None:
    """The groups of ``compiled``'s free state by ``key``, caught up with its ledger; None for
    the first :data:`BUILD_AFTER_QUERIES` questions about a state (a what-if copy asked once
    or twice, as a preemption's victim search asks each of its copies, would pay for grouping
    every node and gain nothing)."""
    state = (id(compiled.free_gpu_mask), key.name)
    buckets = _BUCKETS.get(state)
    if isinstance(buckets, FreeStateBuckets):
        buckets.catch_up(compiled, index)
        return buckets
    if buckets is None:
        weakref.finalize(compiled.free_gpu_mask, _BUCKETS.pop, state, None)
    asked = (buckets or 0) + 1
    if asked < BUILD_AFTER_QUERIES:
        _BUCKETS[state] = asked
        return None
    built = FreeStateBuckets(compiled.n_nodes, key)
    built.rebuild(compiled, index)
    _BUCKETS[state] = built
    return built


def warm_up() -> None:
    """Load (or compile) this module's kernels with the argument types the search passes."""
    nodes = np.zeros(1, dtype=np.int64)
    shape = np.zeros(1, dtype=np.int32)
    masks = np.ones(1, dtype=np.uint64)
    used = np.zeros((1, 1), dtype=np.int32)
    usable = np.ones((1, 1), dtype=np.bool_)
    keys = _keys_of(nodes, shape, masks, used, usable)
    words = np.zeros((1, 1), dtype=np.uint64)
    counts = np.zeros(1, dtype=np.int64)
    _fill_bitmaps(words, counts, nodes)
    eligible = np.ones(1, dtype=np.bool_)
    eligible.flags.writeable = False
    table = np.zeros((1, 2))
    flags = np.ones(1, dtype=np.bool_)
    best_node_in_groups(
        keys, counts, words, 1, 1, 1000, eligible, nodes, nodes, 0, 0, 1.0, table, table, flags, 1.0
    )
