"""The placement cost: one function that the fast path, the exact path and the reports share.

Terms, all in units of the normalised link-cost scale (H100 NVLink4 = 1, see
:mod:`topology.costs`):

- communication: the gang's bottleneck link (ring/tree collectives run at the speed of their
  slowest edge) times the gang's communication intensity;
- latency: a small charge per fabric level the gang's lowest common domain sits above the node;
- fragmentation: capacity the placement strands, i.e. nodes left partly used, and leftover GPUs
  whose links are worse than they need be;
- misalignment: members split across NUMA sockets, or multi-node members on different NIC rails.

Changing a weight changes every solver's notion of "best" at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from scheduler.gang import Gang
from scheduler.placement import CostBreakdown, MemberPlacement
from topology.compiled import CompiledCluster
from topology.model import MILLI_PER_GPU

LATENCY_COST_PER_LEVEL = 0.1
"""Per fabric level climbed: small against any bandwidth step (NVLink -> leaf is 9)."""
FRAGMENTATION_WEIGHT = 1.0
"""Per touched node left partly used, times the fraction of its GPU capacity left free."""
LEFTOVER_LINK_WEIGHT = 0.25
"""Per touched node, times how much worse (0..1) the leftover GPUs' worst link is than the best
set of the same size could have been; the NVSwitch-aware version of go-gpuallocator's idea."""
NUMA_SPLIT_PENALTY = 0.5
"""Per member whose GPUs span CPU sockets (Topology Manager alignment lost)."""
RAIL_MISALIGN_PENALTY = 1.0
"""Times the share of a multi-node gang's members not on the gang's main rail set."""


def lowest_common_domain(compiled: CompiledCluster, nodes: Sequence[int]) -> tuple[int, int]:
    """(level index, flat domain id) of the smallest domain holding all ``nodes``."""
    cols = compiled.node_domain[:, np.unique(np.asarray(nodes, dtype=np.int64))]
    same = (cols == cols[:, :1]).all(axis=1)
    level = int(np.argmax(same))
    return level, int(cols[level, 0])


def communication_cost(
    compiled: CompiledCluster, members: Sequence[MemberPlacement], level: int
) -> float:
    """Bottleneck pair cost over every pair of GPUs the gang uses."""
    if level > 0:
        if compiled.level_is_nvlink[level]:
            return float(compiled.level_cost[level])
        nodes = np.unique([m.node_index for m in members])
        return float(max(compiled.level_cost[level], compiled.node_egress_cost[nodes].max()))
    gpus = sorted({g for m in members for g in m.gpus})
    if len(gpus) < 2:
        return 0.0
    node = members[0].node_index
    sub = compiled.pair_cost_matrix(node)[np.ix_(gpus, gpus)]
    return float(sub.max())


def _used_after(
    compiled: CompiledCluster, members: Sequence[MemberPlacement]
) -> dict[int, np.ndarray]:
    after: dict[int, np.ndarray] = {}
    for m in members:
        used = after.setdefault(m.node_index, compiled.gpu_used_milli[m.node_index].copy())
        for g in m.gpus:
            used[g] += m.gpu_milli
    return after


def best_leftover_link(pair_cost: np.ndarray, count: int) -> float:
    """Worst link inside the best-connected set of ``count`` GPUs of a node (greedy over the
    pair matrix: exact for NVSwitch and switch-pair layouts, where links are hierarchical)."""
    n = int(np.isfinite(np.diag(pair_cost)).sum())
    if count < 2 or n < count:
        return 0.0
    best = np.inf
    for seed in range(n):
        chosen = [seed]
        worst = 0.0
        while len(chosen) < count:
            rest = [g for g in range(n) if g not in chosen]
            link = pair_cost[np.ix_(rest, chosen)].max(axis=1)
            pick = int(np.argmin(link))
            worst = max(worst, float(link[pick]))
            chosen.append(rest[pick])
        best = min(best, worst)
    return float(best)


_IDEAL_TABLES: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def ideal_leftover_table(compiled: CompiledCluster) -> np.ndarray:
    """``[shape, count]`` -> :func:`best_leftover_link`, computed once per node shape."""
    shapes = compiled.shape_pair_cost
    cached = _IDEAL_TABLES.get(id(shapes))
    if cached is not None and cached[0] is shapes:
        return cached[1]
    table = np.zeros((shapes.shape[0], shapes.shape[1] + 1))
    for s in range(shapes.shape[0]):
        for count in range(2, shapes.shape[1] + 1):
            table[s, count] = best_leftover_link(shapes[s], count)
    _IDEAL_TABLES[id(shapes)] = (shapes, table)
    return table


def fragmentation_cost(compiled: CompiledCluster, members: Sequence[MemberPlacement]) -> float:
    total = 0.0
    ideal_table = ideal_leftover_table(compiled)
    for node, used in _used_after(compiled, members).items():
        usable = compiled.gpu_usable[node]
        capacity = int(usable.sum()) * MILLI_PER_GPU
        if capacity == 0:
            continue
        free_milli = int((MILLI_PER_GPU - used[usable]).sum())
        if 0 < free_milli < capacity:
            total += FRAGMENTATION_WEIGHT * free_milli / capacity
        free = np.flatnonzero((used == 0) & usable)
        if len(free) >= 2:
            pair = compiled.pair_cost_matrix(node)
            worst_node = float(pair[np.ix_(np.flatnonzero(usable), np.flatnonzero(usable))].max())
            left = float(pair[np.ix_(free, free)].max())
            ideal = ideal_table[compiled.node_shape[node], len(free)]
            if worst_node > 0 and np.isfinite(left):
                total += LEFTOVER_LINK_WEIGHT * (left - ideal) / worst_node
    return float(total)


def misalignment_cost(
    compiled: CompiledCluster, members: Sequence[MemberPlacement], level: int
) -> float:
    penalty = 0.0
    for m in members:
        if len(m.gpus) < 2:
            continue
        numa = compiled.gpu_numa[m.node_index]
        socket_size = np.bincount(numa[compiled.gpu_usable[m.node_index]]).max()
        if len(m.gpus) <= socket_size and len(set(numa[list(m.gpus)].tolist())) > 1:
            penalty += NUMA_SPLIT_PENALTY
    gpu_members = [m for m in members if m.gpus]  # CPU-only members use no GPU rail
    if level > 0 and len(gpu_members) > 1:
        rails = [
            frozenset(compiled.gpu_rail[m.node_index, list(m.gpus)].tolist()) for m in gpu_members
        ]
        main_count = Counter(rails).most_common(1)[0][1]
        penalty += RAIL_MISALIGN_PENALTY * (len(gpu_members) - main_count) / len(gpu_members)
    return penalty


def placement_cost(
    compiled: CompiledCluster, gang: Gang, members: Sequence[MemberPlacement]
) -> CostBreakdown:
    """Cost of placing ``members`` of ``gang`` on the cluster as it is *before* the placement."""
    if not members:
        return CostBreakdown()
    level, _ = lowest_common_domain(compiled, [m.node_index for m in members])
    return CostBreakdown(
        communication=gang.comm_intensity * communication_cost(compiled, members, level),
        fragmentation=fragmentation_cost(compiled, members),
        misalignment=misalignment_cost(compiled, members, level),
        latency=LATENCY_COST_PER_LEVEL * level,
    )
