"""Numba kernels for the placement hot loops: per-node member capacity, per-domain totals,
single-node scoring and the best fitting nodes, each one pass over the compiled arrays.

These loops run once per gang over every node (80,000 GPUs on a 10,000-node cluster); as numpy
expressions each would allocate several node-sized temporaries, fused here into one loop.
``bench/placement_report.py`` times them against their numpy equivalents, and the tests compare
each with its numpy reference. ``cache=True`` keeps the compile cost (about ten seconds for
these, the cost and the ledger kernels together) to the first run on a machine.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from phalanx.scheduler import cost_kernels

MILLI_PER_GPU = 1000
"""Mirrors :data:`topology.model.MILLI_PER_GPU` (numba needs a module-level constant)."""


@njit(cache=True, inline="always")
def floor_div(x: int, d: int) -> int:
    """``x // d`` for ``0 <= x < 2**52`` and ``d > 0`` (every count, milli-GPU, cpu and memory
    figure here) through a float division: exact in that range, and about four times faster
    than integer floor division, which dominated these loops."""
    return np.int64(x / d)


@njit(cache=True, inline="always")
def cap_by_cpu_memory(
    cap: int, cpu_free_milli: int, memory_free_mib: int, cpu_milli: int, memory_mib: int
) -> int:
    """``cap`` lowered to what the node's free cpu and memory hold (0 requests: no limit)."""
    if cpu_milli > 0:
        cap = min(cap, floor_div(cpu_free_milli, cpu_milli))
    if memory_mib > 0:
        cap = min(cap, floor_div(memory_free_mib, memory_mib))
    return cap


@njit(cache=True)
def popcount(mask: np.uint64) -> int:
    """Number of set bits of a free-GPU mask."""
    count = 0
    while mask:
        mask &= mask - np.uint64(1)
        count += 1
    return count


@njit(cache=True)
def whole_member_capacity(
    eligible: np.ndarray,
    free_gpu_count: np.ndarray,
    cpu_free_milli: np.ndarray,
    memory_free_mib: np.ndarray,
    gpus: int,
    cpu_milli: int,
    memory_mib: int,
    unbounded: int,
) -> np.ndarray:
    """How many members of ``gpus`` whole GPUs (0: CPU-only) each node can take now:
    ``min(free // gpus, cpu_free // cpu, memory_free // memory)``, 0 where not eligible."""
    n = eligible.shape[0]
    out = np.zeros(n, dtype=np.int64)
    for i in range(n):
        if not eligible[i]:
            continue
        cap = unbounded
        if gpus > 0:
            cap = min(cap, floor_div(free_gpu_count[i], gpus))
        out[i] = cap_by_cpu_memory(
            cap, cpu_free_milli[i], memory_free_mib[i], cpu_milli, memory_mib
        )
    return out


@njit(cache=True)
def fractional_member_capacity(
    eligible: np.ndarray,
    gpu_used_milli: np.ndarray,
    gpu_usable: np.ndarray,
    cpu_free_milli: np.ndarray,
    memory_free_mib: np.ndarray,
    gpu_milli: int,
    cpu_milli: int,
    memory_mib: int,
) -> np.ndarray:
    """How many ``gpu_milli`` shares each node can take now: the sum over its usable GPUs of
    ``free_milli // gpu_milli``, capped by cpu and memory; 0 where not eligible."""
    n, max_gpus = gpu_used_milli.shape
    out = np.zeros(n, dtype=np.int64)
    per_free_gpu = floor_div(MILLI_PER_GPU, gpu_milli)
    for i in range(n):
        if not eligible[i]:
            continue
        cap = 0
        for g in range(max_gpus):
            used = gpu_used_milli[i, g]
            if not gpu_usable[i, g] or used == MILLI_PER_GPU:
                continue
            cap += per_free_gpu if used == 0 else floor_div(MILLI_PER_GPU - used, gpu_milli)
        out[i] = cap_by_cpu_memory(
            cap, cpu_free_milli[i], memory_free_mib[i], cpu_milli, memory_mib
        )
    return out


@njit(cache=True)
def nvlink_unit_capacity(
    member_capacity: np.ndarray,
    free_gpu_mask: np.ndarray,
    nvlink_masks: np.ndarray,
    unit_gpus: int,
    unit_members: int,
) -> np.ndarray:
    """How many NVLink groups (``unit_members`` members, ``unit_gpus`` GPUs in all) each node
    can take when every group must sit inside one of the node's NVLink domains
    (``nvlink_masks[node]``: one GPU bitmask per domain, 0 padded)."""
    n, n_domains = nvlink_masks.shape
    out = np.zeros(n, dtype=np.int64)
    for i in range(n):
        if member_capacity[i] < unit_members:
            continue
        units = 0
        for s in range(n_domains):
            free = free_gpu_mask[i] & nvlink_masks[i, s]
            if free:
                units += floor_div(popcount(free), unit_gpus)
        out[i] = min(units, floor_div(member_capacity[i], unit_members))
    return out


@njit(cache=True)
def domain_totals(node_domain: np.ndarray, values: np.ndarray, n_domains: int) -> np.ndarray:
    """Sum of ``values`` over the nodes of every domain of every level (flat domain ids):
    with per-node member capacities this is each domain's capacity in member-sized chunks."""
    n_levels, n = node_domain.shape
    out = np.zeros(n_domains, dtype=np.int64)
    for level in range(n_levels):
        for i in range(n):
            out[node_domain[level, i]] += values[i]
    return out


@njit(cache=True)
def single_node_costs(
    nodes: np.ndarray,
    demand_milli: int,
    gpu_used_milli: np.ndarray,
    gpu_usable: np.ndarray,
    fragmentation_weight: float,
    choice_shape: np.ndarray,
    free_gpu_mask: np.ndarray,
    choice_worst: np.ndarray,
    choice_penalty: np.ndarray,
    has_table: np.ndarray,
    worst_link_weight: float,
) -> np.ndarray:
    """Proxy cost of putting ``demand_milli`` of GPU on each node in ``nodes``: the share of
    the node left partly free (the fragmentation term of :mod:`scheduler.cost`) plus, where the
    node's shape has a GPU-choice table, the chosen set's worst link and its NUMA/leftover
    penalties."""
    m = nodes.shape[0]
    max_gpus = gpu_used_milli.shape[1]
    out = np.zeros(m, dtype=np.float64)
    for j in range(m):
        i = nodes[j]
        capacity = 0
        free = 0
        for g in range(max_gpus):
            if gpu_usable[i, g]:
                capacity += MILLI_PER_GPU
                free += MILLI_PER_GPU - gpu_used_milli[i, g]
        after = free - demand_milli
        cost = 0.0
        if 0 < after < capacity:
            cost = fragmentation_weight * after / capacity
        shape = choice_shape[i]
        if has_table[shape]:
            mask = free_gpu_mask[i]
            cost += worst_link_weight * choice_worst[shape, mask] + choice_penalty[shape, mask]
        out[j] = cost
    return out


@njit(cache=True)
def best_fitting_nodes(
    node_units: np.ndarray,
    units: np.ndarray,
    count: int,
    demand_milli: int,
    gpu_used_milli: np.ndarray,
    gpu_usable: np.ndarray,
    fragmentation_weight: float,
    choice_shape: np.ndarray,
    free_gpu_mask: np.ndarray,
    choice_worst: np.ndarray,
    choice_penalty: np.ndarray,
    has_table: np.ndarray,
    worst_link_weight: float,
) -> tuple[np.ndarray, int, bool]:
    """The ``count`` nodes with room for every class (``node_units[c, i] >= units[c]``) of
    lowest :func:`single_node_costs` cost (the same arithmetic, written out: as a shared
    function call it ran four times slower), lowest index first among equal costs, best first: what
    ranking the fitting nodes by (cost, index) and keeping the first ``count`` gives, in one
    pass without the node-sized temporaries. Also how many nodes fit, and whether a cost was
    NaN (whose order the caller leaves to the sorting reference)."""
    n_classes, n = node_units.shape
    max_gpus = gpu_used_milli.shape[1]
    best = np.empty(count, dtype=np.int64)
    best_cost = np.empty(count, dtype=np.float64)
    kept = 0
    fitting = 0
    for i in range(n):
        fits = True
        for c in range(n_classes):
            if node_units[c, i] < units[c]:
                fits = False
                break
        if not fits:
            continue
        fitting += 1
        capacity = 0
        free = 0
        for g in range(max_gpus):
            if gpu_usable[i, g]:
                capacity += MILLI_PER_GPU
                free += MILLI_PER_GPU - gpu_used_milli[i, g]
        after = free - demand_milli
        cost = 0.0
        if 0 < after < capacity:
            cost = fragmentation_weight * after / capacity
        shape = choice_shape[i]
        if has_table[shape]:
            mask = free_gpu_mask[i]
            cost += worst_link_weight * choice_worst[shape, mask] + choice_penalty[shape, mask]
        if np.isnan(cost):
            return best[:kept], fitting, True
        if kept == count and cost >= best_cost[kept - 1]:
            continue
        pos = kept if kept < count else count - 1
        while pos > 0 and best_cost[pos - 1] > cost:
            if pos < count:
                best[pos] = best[pos - 1]
                best_cost[pos] = best_cost[pos - 1]
            pos -= 1
        best[pos] = i
        best_cost[pos] = cost
        if kept < count:
            kept += 1
    return best[:kept], fitting, False


def warm_up() -> None:
    """Load (or compile) every kernel with the argument types the engine passes, so that a
    service's first placement, or a command's timing, does not include it. Eligibility masks
    are read-only (they are cached), which is part of the compiled signature."""
    index = np.zeros(1, dtype=np.int64)
    ones = np.ones(1, dtype=np.int64)
    eligible = np.ones(1, dtype=np.bool_)
    eligible.flags.writeable = False
    flags = np.ones(1, dtype=np.bool_)
    used = np.zeros((1, 1), dtype=np.int32)
    usable = np.ones((1, 1), dtype=np.bool_)
    masks = np.ones(1, dtype=np.uint64)
    count = np.ones(1, dtype=np.int32)
    table = np.zeros((1, 2))
    whole_member_capacity(eligible, count, ones, ones, 1, 1, 1, 1)
    fractional_member_capacity(eligible, used, usable, ones, ones, 1, 1, 1)
    nvlink_unit_capacity(ones, masks, np.ones((1, 1), dtype=np.uint64), 1, 1)
    domain_totals(np.zeros((1, 1), dtype=np.int64), ones, 1)
    single_node_costs(index, 1, used, usable, 1.0, count, masks, table, table, flags, 1.0)
    units = np.ones((1, 1), dtype=np.int64)
    best_fitting_nodes(units, ones, 1, 1, used, usable, 1.0, count, masks, table, table, flags, 1.0)
    cost_kernels.warm_up()
    from phalanx.scheduler import free_state_buckets  # imports this module

    free_state_buckets.warm_up()
