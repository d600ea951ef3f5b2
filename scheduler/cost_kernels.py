"""Compiled terms of :func:`scheduler.cost.placement_cost`: one pass over a placement's members.

The cost function is priced for every candidate the fast path fills (several per gang, one per
one-member placement), and in Python it was a loop of small numpy calls per member and per
touched node (``np.unique``, ``np.ix_`` submatrices, ``Counter`` of rail sets), about half of a
128-member placement. These kernels compute the same four terms with the same floating-point
operations in the same order, so every total is bit-identical to the Python reference in
:mod:`scheduler.cost` (``reference_placement_cost``), which the tests compare them against.

Members arrive as arrays: ``member_node[m]``, ``member_gpus[m, :member_gpu_count[m]]`` (GPU
indices, padded with -1) and ``member_milli[m]`` (share taken of each of its GPUs), which
:func:`placement_terms` builds from a table of (node, share, GPU bitmask) per member.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

MILLI_PER_GPU = 1000
"""Mirrors :data:`topology.model.MILLI_PER_GPU` (numba needs a module-level constant)."""
RAIL_BITS = 62
"""Rail sets are bitmasks of ``rail + 1`` (bit 0: a GPU without a NIC); larger rail ids make
:func:`scheduler.cost.placement_cost` use its Python reference instead."""


@njit(cache=True)
def lowest_common_level(node_domain: np.ndarray, member_node: np.ndarray) -> tuple[int, int]:
    """(level, flat domain id) of the smallest domain holding every member's node: the first
    level where all nodes share a domain (level 0 and the lowest node when none does, as the
    reference's ``argmax`` over an all-false column)."""
    n_levels = node_domain.shape[0]
    lowest = member_node[0]
    for j in range(1, member_node.shape[0]):
        lowest = min(lowest, member_node[j])
    for level in range(n_levels):
        first = node_domain[level, member_node[0]]
        same = True
        for j in range(1, member_node.shape[0]):
            if node_domain[level, member_node[j]] != first:
                same = False
                break
        if same:
            return level, first
    return 0, node_domain[0, lowest]


@njit(cache=True)
def _max_link(pair: np.ndarray, mask: np.uint64, max_gpus: int) -> float:
    """Largest entry of ``pair`` over every (i, j) with both bits set in ``mask`` (diagonal
    included, NaN propagating, as ``ndarray.max`` of the submatrix)."""
    best = -np.inf
    for i in range(max_gpus):
        if not (mask >> np.uint64(i)) & np.uint64(1):
            continue
        for j in range(max_gpus):
            if (mask >> np.uint64(j)) & np.uint64(1):
                v = pair[i, j]
                if math.isnan(v):
                    return v
                if v > best:
                    best = v
    return best


@njit(cache=True)
def communication_term(
    level: int,
    level_cost: np.ndarray,
    level_is_nvlink: np.ndarray,
    node_egress_cost: np.ndarray,
    node_shape: np.ndarray,
    shape_pair_cost: np.ndarray,
    member_node: np.ndarray,
    member_gpus: np.ndarray,
    member_gpu_count: np.ndarray,
) -> float:
    """The gang's bottleneck link before its communication intensity: the level's link (or the
    dearest node's egress, whichever is slower) across nodes; inside one node the worst pair
    among every GPU the gang uses (0 below two GPUs)."""
    if level > 0:
        if level_is_nvlink[level]:
            return level_cost[level]
        link = level_cost[level]
        egress = node_egress_cost[member_node[0]]
        for j in range(1, member_node.shape[0]):
            egress = max(egress, node_egress_cost[member_node[j]])
        return egress if egress > link else link
    used = np.uint64(0)
    count = 0
    for j in range(member_node.shape[0]):
        for k in range(member_gpu_count[j]):
            bit = np.uint64(1) << np.uint64(member_gpus[j, k])
            if not used & bit:
                used |= bit
                count += 1
    return _within_node_link(node_shape, shape_pair_cost, member_node[0], used, count)


@njit(cache=True, inline="always")
def _within_node_link(
    node_shape: np.ndarray, shape_pair_cost: np.ndarray, node: int, used: np.uint64, count: int
) -> float:
    """The worst pair among the ``count`` GPUs of ``node`` set in ``used`` (0 below two)."""
    if count < 2:
        return 0.0
    pair = shape_pair_cost[node_shape[node]]
    return _max_link(pair, used, pair.shape[0])


@njit(cache=True)
def _node_order(member_node: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct nodes in order of first appearance, and the members grouped by node in
    that order (``starts`` indexes ``grouped``)."""
    m = member_node.shape[0]
    by_node = np.argsort(member_node, kind="mergesort")  # stable: rank order inside a node
    first_pos = np.empty(m, dtype=np.int64)
    group_start = np.empty(m + 1, dtype=np.int64)
    groups = 0
    for k in range(m):
        if k == 0 or member_node[by_node[k]] != member_node[by_node[k - 1]]:
            group_start[groups] = k
            first_pos[groups] = by_node[k]
            groups += 1
    group_start[groups] = m
    order = np.argsort(first_pos[:groups], kind="mergesort")
    nodes = np.empty(groups, dtype=np.int64)
    starts = np.empty(groups + 1, dtype=np.int64)
    grouped = np.empty(m, dtype=np.int64)
    filled = 0
    for g in range(groups):
        src = order[g]
        nodes[g] = member_node[by_node[group_start[src]]]
        starts[g] = filled
        for k in range(group_start[src], group_start[src + 1]):
            grouped[filled] = by_node[k]
            filled += 1
    starts[groups] = filled
    return nodes, starts, grouped


@njit(cache=True)
def fragmentation_term(
    gpu_used_milli: np.ndarray,
    gpu_usable: np.ndarray,
    node_shape: np.ndarray,
    shape_pair_cost: np.ndarray,
    ideal_table: np.ndarray,
    member_node: np.ndarray,
    member_gpus: np.ndarray,
    member_gpu_count: np.ndarray,
    member_milli: np.ndarray,
    fragmentation_weight: float,
    leftover_link_weight: float,
) -> float:
    """Sum over touched nodes, in order of first appearance, of the share of the node left
    partly free and the leftover GPUs' worst link beyond the best possible for their count."""
    nodes, starts, grouped = _node_order(member_node)
    max_gpus = gpu_used_milli.shape[1]
    used = np.empty(max_gpus, dtype=np.int64)
    total = 0.0
    for g in range(nodes.shape[0]):
        node = nodes[g]
        for i in range(max_gpus):
            used[i] = gpu_used_milli[node, i]
        for k in range(starts[g], starts[g + 1]):
            j = grouped[k]
            for q in range(member_gpu_count[j]):
                used[member_gpus[j, q]] += member_milli[j]
        stranded, leftover_link = _node_fragmentation(
            gpu_usable,
            node_shape,
            shape_pair_cost,
            ideal_table,
            node,
            used,
            fragmentation_weight,
            leftover_link_weight,
        )
        total += stranded
        total += leftover_link
    return total


@njit(cache=True, inline="always")
def _node_fragmentation(
    gpu_usable: np.ndarray,
    node_shape: np.ndarray,
    shape_pair_cost: np.ndarray,
    ideal_table: np.ndarray,
    node: int,
    used: np.ndarray,
    fragmentation_weight: float,
    leftover_link_weight: float,
) -> tuple[float, float]:
    """(stranded share, leftover link) of ``node`` with ``used`` milli-GPUs on each GPU (its
    use with the placement's members on it): :func:`fragmentation_term`'s two terms for one
    node."""
    max_gpus = used.shape[0]
    stranded = 0.0
    leftover_link = 0.0
    usable_mask = np.uint64(0)
    free_mask = np.uint64(0)
    usable_gpus = 0
    free_milli = 0
    free_gpus = 0
    for i in range(max_gpus):
        if gpu_usable[node, i]:
            usable_mask |= np.uint64(1) << np.uint64(i)
            usable_gpus += 1
            free_milli += MILLI_PER_GPU - used[i]
            if used[i] == 0:
                free_mask |= np.uint64(1) << np.uint64(i)
                free_gpus += 1
    capacity = usable_gpus * MILLI_PER_GPU
    if capacity > 0:
        if 0 < free_milli < capacity:
            stranded = fragmentation_weight * free_milli / capacity
        if free_gpus >= 2:
            pair = shape_pair_cost[node_shape[node]]
            worst_node = _max_link(pair, usable_mask, max_gpus)
            left = _max_link(pair, free_mask, max_gpus)
            ideal = ideal_table[node_shape[node], free_gpus]
            if worst_node > 0 and math.isfinite(left):
                leftover_link = leftover_link_weight * (left - ideal) / worst_node
    return stranded, leftover_link


@njit(cache=True)
def misalignment_term(
    level: int,
    gpu_usable: np.ndarray,
    gpu_numa: np.ndarray,
    gpu_rail: np.ndarray,
    member_node: np.ndarray,
    member_gpus: np.ndarray,
    member_gpu_count: np.ndarray,
    numa_split_penalty: float,
    rail_misalign_penalty: float,
) -> float:
    """NUMA splits (a member whose GPUs span sockets although one socket could hold them) and,
    for a multi-node gang of several GPU members, the share of members off the most common
    rail set (the first such set among equals, as ``Counter.most_common``)."""
    m = member_node.shape[0]
    split = 0
    for j in range(m):
        count = member_gpu_count[j]
        if count < 2:
            continue
        mask = np.uint64(0)
        for q in range(count):
            mask |= np.uint64(1) << np.uint64(member_gpus[j, q])
        split += _numa_split(gpu_usable, gpu_numa, member_node[j], mask, count)
    penalty = numa_split_penalty * split
    on_gpus = 0
    for j in range(m):
        if member_gpu_count[j] > 0:
            on_gpus += 1
    if level > 0 and on_gpus > 1:
        rails = np.zeros(m, dtype=np.uint64)
        for j in range(m):
            for q in range(member_gpu_count[j]):
                rail = gpu_rail[member_node[j], member_gpus[j, q]] + 1
                rails[j] |= np.uint64(1) << np.uint64(rail)
        distinct = np.zeros(m, dtype=np.uint64)  # rail sets in order of first appearance
        seen = np.zeros(m, dtype=np.int64)
        n_distinct = 0
        for j in range(m):
            if member_gpu_count[j] == 0:
                continue
            d = 0
            while d < n_distinct and distinct[d] != rails[j]:
                d += 1
            if d == n_distinct:
                distinct[d] = rails[j]
                n_distinct += 1
            seen[d] += 1
        best = 0
        for d in range(1, n_distinct):
            if seen[d] > seen[best]:
                best = d
        main = distinct[best]
        off = 0
        for j in range(m):
            if member_gpu_count[j] > 0 and rails[j] != main:
                off += 1
        penalty += rail_misalign_penalty * off / on_gpus
    return penalty


@njit(cache=True, inline="always")
def _numa_split(
    gpu_usable: np.ndarray, gpu_numa: np.ndarray, node: int, gpus: np.uint64, count: int
) -> int:
    """1 when the ``count`` GPUs of ``node`` set in ``gpus`` span sockets although the node's
    largest socket could hold them, else 0."""
    max_gpus = gpu_numa.shape[1]
    largest = 0  # GPUs of the node's largest socket
    for i in range(max_gpus):
        if gpu_usable[node, i]:
            size = 0
            for k in range(max_gpus):
                if gpu_usable[node, k] and gpu_numa[node, k] == gpu_numa[node, i]:
                    size += 1
            largest = max(largest, size)
    first = 0
    seen = False
    spans = False
    for i in range(max_gpus):
        if (gpus >> np.uint64(i)) & np.uint64(1):
            if not seen:
                first, seen = gpu_numa[node, i], True
            elif gpu_numa[node, i] != first:
                spans = True
    return 1 if count <= largest and spans else 0


MEMBER_NODE, MEMBER_MILLI, MEMBER_MASK = 0, 1, 2
"""Columns of the member table :func:`placement_terms` takes (uint64 [m, 3]): node, share of
each of its GPUs, and the GPUs as a bitmask (every term is indifferent to their order)."""


@njit(cache=True)
def placement_terms(
    node_domain: np.ndarray,
    level_cost: np.ndarray,
    level_is_nvlink: np.ndarray,
    node_egress_cost: np.ndarray,
    node_shape: np.ndarray,
    shape_pair_cost: np.ndarray,
    gpu_used_milli: np.ndarray,
    gpu_usable: np.ndarray,
    gpu_numa: np.ndarray,
    gpu_rail: np.ndarray,
    ideal_table: np.ndarray,
    members: np.ndarray,
    weights: np.ndarray,
) -> tuple[int, int, float, float, float]:
    """(level, domain, communication link, fragmentation, misalignment) in one call (a call
    into compiled code costs about a microsecond plus its arguments; the terms share most),
    from one member table (three numbers a member: the cheapest to build in Python).
    ``weights``: fragmentation, leftover link, NUMA split and rail weights, in that order."""
    m = members.shape[0]
    member_node = np.empty(m, dtype=np.int64)
    member_milli = np.empty(m, dtype=np.int64)
    member_gpu_count = np.zeros(m, dtype=np.int64)
    width = 1
    for j in range(m):
        member_node[j] = np.int64(members[j, MEMBER_NODE])
        member_milli[j] = np.int64(members[j, MEMBER_MILLI])
        mask = members[j, MEMBER_MASK]
        while mask:
            mask &= mask - np.uint64(1)
            member_gpu_count[j] += 1
        width = max(width, member_gpu_count[j])
    member_gpus = np.full((m, width), -1, dtype=np.int64)
    for j in range(m):
        mask = members[j, MEMBER_MASK]
        q = 0
        for g in range(64):
            if (mask >> np.uint64(g)) & np.uint64(1):
                member_gpus[j, q] = g
                q += 1
    level, domain = lowest_common_level(node_domain, member_node)
    comm = communication_term(
        level,
        level_cost,
        level_is_nvlink,
        node_egress_cost,
        node_shape,
        shape_pair_cost,
        member_node,
        member_gpus,
        member_gpu_count,
    )
    fragmentation = fragmentation_term(
        gpu_used_milli,
        gpu_usable,
        node_shape,
        shape_pair_cost,
        ideal_table,
        member_node,
        member_gpus,
        member_gpu_count,
        member_milli,
        weights[0],
        weights[1],
    )
    misalignment = misalignment_term(
        level,
        gpu_usable,
        gpu_numa,
        gpu_rail,
        member_node,
        member_gpus,
        member_gpu_count,
        weights[2],
        weights[3],
    )
    return level, domain, comm, fragmentation, misalignment


@njit(cache=True)
def single_member_terms(
    node_shape: np.ndarray,
    shape_pair_cost: np.ndarray,
    gpu_used_milli: np.ndarray,
    gpu_usable: np.ndarray,
    gpu_numa: np.ndarray,
    ideal_table: np.ndarray,
    node: int,
    milli: int,
    gpu_mask: int,
    weights: np.ndarray,
) -> tuple[float, float, float]:
    """:func:`placement_terms` for one member (level 0, its own node), from scalars and the
    six arrays that level reads (each array argument costs a fraction of a microsecond to
    pass; most placements are one member). The per-node and per-member parts are the very
    functions the gang terms call, fed the member's GPU mask directly: building one-row member
    arrays for the gang terms was most of this call."""
    mask = np.uint64(gpu_mask)
    count = 0
    rest = mask
    while rest:
        rest &= rest - np.uint64(1)
        count += 1
    comm = _within_node_link(node_shape, shape_pair_cost, node, mask, count)
    used = np.empty(gpu_used_milli.shape[1], dtype=np.int64)
    for i in range(used.shape[0]):
        used[i] = gpu_used_milli[node, i]
        if (mask >> np.uint64(i)) & np.uint64(1):
            used[i] += milli
    stranded, leftover_link = _node_fragmentation(
        gpu_usable, node_shape, shape_pair_cost, ideal_table, node, used, weights[0], weights[1]
    )
    fragmentation = 0.0
    fragmentation += stranded
    fragmentation += leftover_link
    split = _numa_split(gpu_usable, gpu_numa, node, mask, count) if count >= 2 else 0
    return comm, fragmentation, weights[2] * split


def warm_up() -> None:
    """Load (or compile) every kernel with the argument types the cost function passes."""
    node_domain = np.zeros((2, 1), dtype=np.int64)
    nodes = np.zeros(1, dtype=np.int64)
    gpus = np.zeros((1, 1), dtype=np.int64)
    counts = np.ones(1, dtype=np.int64)
    used = np.zeros((1, 1), dtype=np.int32)
    usable = np.ones((1, 1), dtype=np.bool_)
    small = np.zeros((1, 1), dtype=np.int16)
    pair = np.zeros((1, 1, 1))
    shape = np.zeros(1, dtype=np.int32)
    cost = np.zeros(2)
    lowest_common_level(node_domain, nodes)
    communication_term(1, cost, np.zeros(2, dtype=np.bool_), cost, shape, pair, nodes, gpus, counts)
    fragmentation_term(
        used, usable, shape, pair, np.zeros((1, 2)), nodes, gpus, counts, nodes, 1.0, 1.0
    )
    misalignment_term(1, usable, small, small, nodes, gpus, counts, 1.0, 1.0)
    placement_terms(
        node_domain,
        cost,
        np.zeros(2, dtype=np.bool_),
        cost,
        shape,
        pair,
        used,
        usable,
        small,
        small,
        np.zeros((1, 2)),
        np.zeros((1, 3), dtype=np.uint64),
        np.ones(4),
    )
    single_member_terms(shape, pair, used, usable, small, np.zeros((1, 2)), 0, 1, 1, np.ones(4))
