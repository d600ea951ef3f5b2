"""One member's best topology-scored nodes read from groups of nodes, not from every node.

The topology scorer's one-pass ranking (:func:`policies.scoring.domain_room.best_packed_room_nodes`)
scores every fitting node, about 30 us on 10,000 nodes, and the member's capacity on every
node is computed before it (another 20 us): most of one member's placement in the extender.
A node's score reads nothing but its GPU count, its free-GPU mask (the free count and whether
it is a whole free node follow), its room class and, for two GPUs or more, its link shape. So
the nodes are grouped by *(static class, free-GPU mask)*, the static class being the nodes
with the same room class, link shape and GPU count, with the bitmaps and the change-log
catch-up of :mod:`scheduler.free_state_buckets`. A query scores each group once, with the
very expression the per-node kernel uses (:func:`~policies.scoring.domain_room.score_terms`,
so equal scores are equal to the bit), takes the groups of the highest score, and reads the
lowest nodes of their union that pass the member's static filters and have the cpu and
memory; when none does, the next score down. That is the per-node pass's answer: the fitting
nodes of the top score, the lowest ``ties`` of them by index (tested equal through random
ledgers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numba import njit
from phalanx.policies.scoring.domain_room import (
    distinct_rows,
    room_classes,
    room_inputs,
    score_terms,
    scorer_tables,
    whole_and_shares,
)
from phalanx.scheduler.cluster_index import ClusterIndex, cluster_index
from phalanx.scheduler.free_state_buckets import (
    FreeStateBuckets,
    GroupKey,
    free_state_buckets,
    lowest_fitting_nodes,
)
from phalanx.scheduler.gang import MemberRequest
from phalanx.scheduler.kernels import popcount
from phalanx.topology.compiled import CompiledCluster

STATIC_CLASSES_KEY = "room_groups.static_classes"
"""Where the static classes are kept among the cluster index's derived arrays."""
NO_WHOLE = np.zeros(0, dtype=np.uint8)
"""The per-node whole flags :func:`scorer_tables` passes through: a group has its own."""
NO_LINKS = (np.zeros((1, 1), dtype=np.bool_), np.zeros((1, 1)))
"""Link tables for a score without the link term."""


@dataclass(frozen=True)
class StaticClasses:
    """The nodes grouped by what of their score does not change with the ledger."""

    node_class: np.ndarray
    """int64 [nodes]: each node's static class."""
    room_class: np.ndarray
    """int64 [classes]: the class's room class (:func:`domain_room.room_classes`)."""
    link_shape: np.ndarray
    """int64 [classes]: the class's ``node_shape`` (its links table row)."""
    gpu_count: np.ndarray
    """int64 [classes]: the class's GPUs per node."""


def static_classes(compiled: CompiledCluster) -> StaticClasses:
    """The static classes of ``compiled``'s cluster, built on first use."""
    derived = cluster_index(compiled).derived
    classes = derived.get(STATIC_CLASSES_KEY)
    if classes is None:
        rows = np.stack(
            [
                room_classes(compiled).node_class,
                compiled.node_shape.astype(np.int64),
                compiled.gpu_count.astype(np.int64),
            ],
            axis=1,
        )
        kinds, node_class = distinct_rows(rows)
        classes = derived[STATIC_CLASSES_KEY] = StaticClasses(
            node_class,
            np.ascontiguousarray(kinds[:, 0]),
            np.ascontiguousarray(kinds[:, 1]),
            np.ascontiguousarray(kinds[:, 2]),
        )
    return classes


def _room_keys(compiled: CompiledCluster, index: ClusterIndex, nodes: np.ndarray) -> np.ndarray:
    """int64 [len(nodes), 2]: static class, free-GPU mask (bits)."""
    return _keys_of(nodes, static_classes(compiled).node_class, compiled.free_gpu_mask)


@njit(cache=True)
def _keys_of(nodes: np.ndarray, node_class: np.ndarray, free_gpu_mask: np.ndarray) -> np.ndarray:
    out = np.empty((nodes.size, 2), dtype=np.int64)
    for k in range(nodes.size):
        out[k, 0] = node_class[nodes[k]]
        out[k, 1] = np.int64(free_gpu_mask[nodes[k]])
    return out


def _room_key(compiled: CompiledCluster, index: ClusterIndex, node: int) -> tuple[int, int]:
    """One node's :func:`_room_keys` row."""
    return int(static_classes(compiled).node_class[node]), int(compiled.free_gpu_mask[node])


ROOM_STATE = GroupKey("room state", _room_keys, (47, 16), (0, 0), _room_key)
"""Groups for the topology score: masks of up to 16 GPUs pack with the class into one int64
(wider masks regroup row-wise)."""


def best_room_nodes_in_groups(
    compiled: CompiledCluster,
    request: MemberRequest,
    eligible: np.ndarray,
    weights: tuple[float, float],
    ties: int,
    links: tuple[np.ndarray, np.ndarray] | None,
    fill_link: Callable[[int, int], float],
) -> np.ndarray | None:
    """:func:`~policies.scoring.domain_room.best_packed_room_nodes` for one member of
    ``request`` (whole GPUs) on the ``eligible`` nodes with the cpu and memory, read from the
    groups; ``weights`` are (packing, room). With ``links`` (``known``, ``link`` by node shape
    and free-GPU mask) the link term is subtracted; where an entry is missing for a group with
    room, every such entry is filled with ``fill_link(shape, mask)`` and the query rerun.
    None when the groups are not kept (or not yet) or a score is NaN: the caller then reads
    every node."""
    index = cluster_index(compiled)
    groups = free_state_buckets(compiled, index, ROOM_STATE)
    if groups is None or not groups.usable:
        return None
    classes = static_classes(compiled)
    _, shares = whole_and_shares(compiled, room_inputs(compiled))
    tables = NO_LINKS if links is None else links
    query = (
        groups.key_rows,
        groups.counts,
        groups.words,
        groups.n_groups,
        classes.room_class,
        classes.link_shape,
        classes.gpu_count,
        shares,
        (compiled.max_gpus, request.gpus, *weights),
        tables,
        links is not None,
    )
    fits = (
        ties,
        eligible,
        compiled.cpu_free_milli,
        compiled.memory_free_mib,
        request.cpu_milli,
        request.memory_mib,
    )
    best, complete = _best_room_nodes(*query, *fits)
    if not complete and links is not None:
        _fill_missing_links(groups, classes, request.gpus, links, fill_link)
        best, complete = _best_room_nodes(*query, *fits)
    return best if complete else None


def _fill_missing_links(
    groups: FreeStateBuckets,
    classes: StaticClasses,
    gpus: int,
    links: tuple[np.ndarray, np.ndarray],
    fill_link: Callable[[int, int], float],
) -> None:
    """Look up the link of every group with room whose (shape, mask) the table lacks (a
    memo of a pure function of the two: filling more of it changes no score)."""
    known, link = links
    rows = groups.key_rows[: groups.n_groups]
    for static, mask in rows[groups.counts[: groups.n_groups] > 0].tolist():
        shape = int(classes.link_shape[static])
        if not known[shape, mask] and mask.bit_count() >= gpus:
            link[shape, mask] = fill_link(shape, mask)
            known[shape, mask] = True


@njit(cache=True)
def _best_room_nodes(
    key_rows: np.ndarray,
    counts: np.ndarray,
    words: np.ndarray,
    n_groups: int,
    room_class: np.ndarray,
    link_shape: np.ndarray,
    gpu_count: np.ndarray,
    shares: np.ndarray,
    weights: tuple,
    tables: tuple,
    with_links: bool,
    ties: int,
    eligible: np.ndarray,
    cpu_free_milli: np.ndarray,
    memory_free_mib: np.ndarray,
    cpu_milli: int,
    memory_mib: int,
) -> tuple[np.ndarray, bool]:
    """``(best, complete)``: the groups' scores (:func:`_group_scores`), then the best of
    them (:func:`_best_of_groups`) in one call."""
    scorer = scorer_tables(NO_WHOLE, shares, weights)
    scores, fitting, complete = _group_scores(
        key_rows,
        counts,
        n_groups,
        room_class,
        link_shape,
        gpu_count,
        scorer,
        weights,
        weights[1],
        tables,
        with_links,
    )
    if not complete:
        return np.empty(0, dtype=np.int64), False
    fit = (eligible, cpu_free_milli, memory_free_mib, cpu_milli, memory_mib)
    return _best_of_groups(words, scores, fitting, ties, fit), True


@njit(cache=True)
def _group_scores(
    key_rows: np.ndarray,
    counts: np.ndarray,
    n_groups: int,
    room_class: np.ndarray,
    link_shape: np.ndarray,
    gpu_count: np.ndarray,
    scorer: tuple,
    weights: tuple,
    gpus: int,
    tables: tuple,
    with_links: bool,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(scores, fitting, complete)``: the score of each group with nodes and room for
    ``gpus``, which groups those are, and False when a score is NaN or a link unknown."""
    known, link = tables
    scores = np.empty(n_groups)
    fitting = np.zeros(n_groups, dtype=np.bool_)
    for k in range(n_groups):
        static, mask = key_rows[k, 0], np.uint64(key_rows[k, 1])
        free = popcount(mask)
        if counts[k] == 0 or free < gpus:
            continue
        count = gpu_count[static]
        whole = 1 if count > 0 and free == count else 0
        score = score_terms(scorer, weights, count, free, whole, room_class[static])
        if with_links:
            shape = link_shape[static]
            if not known[shape, mask]:
                return scores, fitting, False
            score = score - link[shape, mask]
        if score != score:
            return scores, fitting, False
        scores[k] = score
        fitting[k] = True
    return scores, fitting, True


@njit(cache=True)
def _best_of_groups(
    words: np.ndarray, scores: np.ndarray, fitting: np.ndarray, ties: int, fit: tuple
) -> np.ndarray:
    """The lowest ``ties`` nodes that take the member (``fit``, as
    :func:`~scheduler.free_state_buckets.lowest_fitting_nodes` reads it) of the highest score
    that has any, in index order (empty when no group's node does)."""
    left = fitting.copy()
    while True:
        top, found = 0.0, False
        for k in range(scores.size):
            if left[k] and (not found or scores[k] > top):
                top, found = scores[k], True
        if not found:
            return np.empty(0, dtype=np.int64)
        tied = np.flatnonzero(left & (scores == top))
        best = lowest_fitting_nodes(words, tied, ties, fit)
        if best.size:
            return best
        left[tied] = False
