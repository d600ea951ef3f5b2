"""Which GPUs of a node a member gets.

Whole GPUs: among the free sets of the requested size, the set whose worst internal link is
lowest (the member's own collectives), then the one that leaves the node's remaining free GPUs
best connected and keeps the member on one NUMA socket and, for multi-node gangs, on the rails
the gang already uses. This is go-gpuallocator's ``besteffort`` idea (score the leftover, not
only the chosen set) on the normalised pair-cost matrix, so NVSwitch nodes, where every pair
is equal, fall through to the NUMA and rail terms instead of looking unconnected.

The penalties are the terms of :mod:`scheduler.cost` for one member on one node, so the choice
minimises the shared cost function rather than a private score. For nodes of up to
``TABLE_MAX_GPUS`` GPUs the best set for every free mask is tabulated once per node shape and
GPU count, which also lets the node-scoring kernel price a node by a table lookup.

Several members of one gang on one node first get a pool, the best set for all of them at
once (NUMA splits counted per member, as the cost function counts them), and then split it.

Fractional shares go to the best-fitting GPU: the busiest one that still has room, so whole
GPUs stay whole; a gang's later shares on a node go first to the GPUs best linked to its
earlier ones.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence

import numpy as np
from phalanx.scheduler.cluster_index import ChoiceShape, ClusterIndex
from phalanx.scheduler.cost import LEFTOVER_LINK_WEIGHT, NUMA_SPLIT_PENALTY
from phalanx.topology.model import MILLI_PER_GPU

TABLE_MAX_GPUS = 8
"""Nodes up to this many GPUs get a table over all 2**gpus free masks (256 rows for 8)."""
TABLE_WIDTH = 1 << TABLE_MAX_GPUS
ENUMERATION_LIMIT = 1024
"""Larger nodes enumerate every free set up to this many; beyond it, one greedy set per seed."""
CHOICE_MEMO_LIMIT = 100_000
"""Memoised choices outside the tables (rail targets, large nodes) kept before starting over,
so a long simulation cannot grow the memo without bound."""

ChoiceTable = tuple[np.ndarray, np.ndarray, np.ndarray]
"""(best set mask uint64, its worst link float64, its penalty float64), indexed by free mask;
a mask with too few free GPUs holds 0 / inf / inf."""

_SHAPE_TABLES: dict[tuple[bytes, int, int], ChoiceTable] = {}
"""Tables by node shape content, set size and member size, shared by every cluster with that
node type."""
_TABLES_BY_SHAPE: dict[tuple[int, int, int], tuple[ChoiceShape, ChoiceTable]] = {}
"""The same tables by shape object (kept with the entry, so a reused id is told apart): the
content key serialises three arrays, and the table is looked up once per placed member."""


def gpus_of(mask: int) -> list[int]:
    """Indices of the set bits of a GPU mask, lowest first."""
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out


MASK_CACHE_SIZE = 1 << 14
"""GPU masks whose GPU tuple is remembered: every free mask of a node of up to 14 GPUs; the
conversion is per placed member, thousands per big gang."""


@functools.lru_cache(maxsize=MASK_CACHE_SIZE)
def mask_gpus(mask: int) -> tuple[int, ...]:
    """:func:`gpus_of` as a tuple, remembered."""
    return tuple(gpus_of(mask))


def rail_mask(shape: ChoiceShape, gpus: tuple[int, ...] | list[int]) -> int:
    """The rails (NICs) a GPU set uses, as a bitmask (bit 0 for GPUs without a NIC)."""
    mask = 0
    for g in gpus:
        mask |= 1 << (int(shape.rail[g]) + 1)
    return mask


def _score_sets(
    shape: ChoiceShape,
    free: np.ndarray,
    sets: np.ndarray,
    member_gpus: int,
    target_rails: int,
    rail_penalty: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Worst internal link and penalty (NUMA splits, leftover links, rails) of each candidate
    set (rows of ``sets``, GPU indices drawn from ``free``) holding members of
    ``member_gpus`` GPUs each."""
    pair = shape.pair_cost
    n_sets, k = sets.shape
    worst = np.zeros(n_sets)
    penalty = np.zeros(n_sets)
    if k >= 2:
        worst = pair[sets[:, :, None], sets[:, None, :]].max(axis=(1, 2))
    if 2 <= member_gpus <= shape.socket_gpus:
        numa = shape.numa[sets]
        aligned = sum(
            (numa == socket).sum(axis=1) // member_gpus for socket in np.unique(shape.numa)
        )
        splits = np.maximum(k // member_gpus - aligned, 0)
        penalty += NUMA_SPLIT_PENALTY * splits
    left_count = free.size - k
    if left_count >= 2 and shape.worst_link > 0:
        chosen = (free[None, :] == sets[:, :, None]).any(axis=1)
        left = np.broadcast_to(free, chosen.shape)[~chosen].reshape(n_sets, left_count)
        left_worst = pair[left[:, :, None], left[:, None, :]].max(axis=(1, 2))
        ideal = shape.ideal_leftover[left_count]
        with np.errstate(invalid="ignore"):
            excess = left_worst - ideal
        # inf - inf: a leftover holding a MIG GPU, a mask that never occurs (MIG is never free)
        penalty += (
            LEFTOVER_LINK_WEIGHT * np.where(np.isnan(excess), np.inf, excess) / shape.worst_link
        )
    if target_rails:
        rails = np.bitwise_or.reduce(
            np.left_shift(1, shape.rail[sets].astype(np.int64) + 1), axis=1
        )
        penalty += rail_penalty * (rails != target_rails)
    return worst, penalty


def _candidate_sets(shape: ChoiceShape, free: np.ndarray, k: int) -> np.ndarray:
    if math.comb(free.size, k) <= ENUMERATION_LIMIT:
        return np.array(list(itertools.combinations(free.tolist(), k)), dtype=np.int64)
    pair = shape.pair_cost
    seeds = []
    for seed in free.tolist():
        chosen = [seed]
        rest = [g for g in free.tolist() if g != seed]
        while len(chosen) < k:
            link = pair[np.ix_(rest, chosen)].max(axis=1)
            other_socket = shape.numa[rest] != shape.numa[seed]
            pick = int(np.lexsort((rest, other_socket, link))[0])
            chosen.append(rest.pop(pick))
        seeds.append(sorted(chosen))
    return np.unique(np.array(seeds, dtype=np.int64), axis=0)


def best_set(
    shape: ChoiceShape,
    free_mask: int,
    k: int,
    target_rails: int = 0,
    rail_penalty: float = 0.0,
    member_gpus: int | None = None,
) -> tuple[tuple[int, ...], float, float]:
    """The best ``k``-set of the free GPUs: lowest worst link, then lowest penalty, then
    lowest indices; with its worst link and penalty. The set serves one member
    (``member_gpus`` = ``k``, the default) or several members of ``member_gpus`` GPUs placed
    together, whose NUMA splits are counted per member as the cost function counts them.
    Requires ``k <= popcount(free_mask)``."""
    free = np.array(gpus_of(free_mask), dtype=np.int64)
    sets = _candidate_sets(shape, free, k)
    per_member = k if member_gpus is None else member_gpus
    worst, penalty = _score_sets(shape, free, sets, per_member, target_rails, rail_penalty)
    pick = int(np.lexsort((np.arange(len(sets)), penalty, worst))[0])
    return tuple(int(g) for g in sets[pick]), float(worst[pick]), float(penalty[pick])


def shape_table(shape: ChoiceShape, k: int, member_gpus: int | None = None) -> ChoiceTable:
    """Best ``k``-set (for members of ``member_gpus`` GPUs, default ``k``) for every free
    mask of a node of this shape (``TABLE_MAX_GPUS`` or fewer GPUs), cached by the shape's
    content."""
    per_member = k if member_gpus is None else member_gpus
    known = _TABLES_BY_SHAPE.get((id(shape), k, per_member))
    if known is not None and known[0] is shape:
        return known[1]
    content = shape.pair_cost.tobytes() + shape.numa.tobytes() + shape.rail.tobytes()
    key = (content, k, per_member)
    table = _SHAPE_TABLES.get(key)
    if table is None:
        best = np.zeros(TABLE_WIDTH, dtype=np.uint64)
        worst = np.full(TABLE_WIDTH, np.inf)
        penalty = np.full(TABLE_WIDTH, np.inf)
        for mask in range(1 << shape.gpu_count):
            if mask.bit_count() < k or k == 0:
                continue
            gpus, worst[mask], penalty[mask] = best_set(shape, mask, k, member_gpus=per_member)
            best[mask] = np.uint64(sum(1 << g for g in gpus))
        table = (best, worst, penalty)
        _SHAPE_TABLES[key] = table
    if len(_TABLES_BY_SHAPE) >= CHOICE_MEMO_LIMIT:
        _TABLES_BY_SHAPE.clear()
    _TABLES_BY_SHAPE[(id(shape), k, per_member)] = (shape, table)
    return table


def stacked_tables(
    index: ClusterIndex, k: int, member_gpus: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(worst [shapes, TABLE_WIDTH], penalty [shapes, TABLE_WIDTH], has_table [shapes]) for
    ``k``-GPU sets of members of ``member_gpus`` GPUs (default ``k``), the arrays
    :func:`scheduler.kernels.single_node_costs` reads."""
    per_member = k if member_gpus is None else member_gpus
    cached = index.choice_tables.get((k, per_member))
    if cached is None:
        n_shapes = max(1, len(index.choice_shapes))
        worst = np.zeros((n_shapes, TABLE_WIDTH))
        penalty = np.zeros((n_shapes, TABLE_WIDTH))
        has = np.zeros(n_shapes, dtype=bool)
        for s, shape in enumerate(index.choice_shapes):
            if shape.gpu_count <= TABLE_MAX_GPUS and 0 < k <= shape.gpu_count:
                _, worst[s], penalty[s] = shape_table(shape, k, per_member)
                has[s] = True
        cached = (worst, penalty, has)
        index.choice_tables[(k, per_member)] = cached
    return cached


def choose_whole_gpus(
    index: ClusterIndex,
    node_shape: int,
    free_mask: int,
    k: int,
    target_rails: int = 0,
    rail_penalty: float = 0.0,
    member_gpus: int | None = None,
) -> tuple[int, ...]:
    """``k`` GPUs out of ``free_mask`` on a node of choice shape ``node_shape``, for one
    member or for several of ``member_gpus`` GPUs each (see :func:`best_set`)."""
    if free_mask.bit_count() == k:
        return mask_gpus(free_mask)
    shape = index.choice_shapes[node_shape]
    per_member = k if member_gpus is None else member_gpus
    if not target_rails and shape.gpu_count <= TABLE_MAX_GPUS:
        best, _, _ = shape_table(shape, k, per_member)
        return mask_gpus(int(best[free_mask]))
    key = (node_shape, free_mask, k, per_member, target_rails, rail_penalty)
    chosen = index.choice_memo.get(key)
    if chosen is None:
        chosen, _, _ = best_set(shape, free_mask, k, target_rails, rail_penalty, per_member)
        if len(index.choice_memo) >= CHOICE_MEMO_LIMIT:
            index.choice_memo.clear()
        index.choice_memo[key] = chosen
    return chosen


def choose_fractional_gpu(
    used_milli: np.ndarray,
    usable: np.ndarray,
    gpu_milli: int,
    pair_cost: np.ndarray | None = None,
    near: Sequence[int] = (),
) -> int:
    """The busiest usable GPU that still has ``gpu_milli`` free (lowest index on ties), or
    -1 if none has. With ``near`` (GPUs the same gang already uses on this node) and the
    node's ``pair_cost``, the GPU with the best worst link to them comes first: sharing one
    of them costs nothing, a far socket the most."""
    fits = usable & (used_milli + gpu_milli <= MILLI_PER_GPU)
    if not fits.any():
        return -1
    candidates = np.flatnonzero(fits)
    if near and pair_cost is not None:
        link = pair_cost[np.ix_(candidates, list(near))].max(axis=1)
    else:
        link = np.zeros(candidates.size)
    order = np.lexsort((candidates, -used_milli[candidates], link))
    return int(candidates[order[0]])
