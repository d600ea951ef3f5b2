"""How much of a node's fabric domains is still whole free nodes: the topology scorer's
"domain room" term, one compiled pass.

A multi-node gang can start inside a domain only on its whole free nodes, so a single-node job
should break a free node where few others remain. The term is read for every candidate node of
every scored placement (the extender's default scorer), and the numpy version made about ten
passes over every node per call, 0.25-0.5 ms on 10,000 nodes.

The kernels group the nodes into *room classes*, the nodes with the same domain at every split
level (a scalable unit's nodes, typically; static per cluster). A call counts the whole free
nodes per class in one pass, per domain from the classes, divides once per domain, and sums a
class's levels once for a whole and once for a partly used node; each node then reads its
class's sum. The quotients and the sums are the same operations on the same operands in the
same order as dividing and summing per node, so the result equals the per-node arithmetic to
the bit (tested against :func:`domain_room_share_reference`); the divisions and the passes per
level were most of the time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit
from phalanx.policies.scoring.whole_free_counts import whole_free_counts
from phalanx.scheduler.cluster_index import cluster_index
from phalanx.topology.compiled import CompiledCluster

ROOM_CLASSES_KEY = "domain_room.classes"
"""Where the room classes are kept among the cluster index's derived arrays."""
SHARES_KEY = "domain_room.shares"
"""Where the classes' shares are kept beside the whole free counts they come from."""


@dataclass(frozen=True)
class RoomClasses:
    """The nodes grouped by their domains at the split levels (static per cluster)."""

    node_class: np.ndarray
    """int64 [nodes]: each node's class."""
    class_domains: np.ndarray
    """int64 [classes, split levels]: each class's domain at each split level."""
    level_ranges: np.ndarray
    """int64 [split levels, 2]: each split level's domain id range."""


def room_classes(compiled: CompiledCluster) -> RoomClasses:
    """The room classes of ``compiled``'s cluster, built on first use."""
    derived = cluster_index(compiled).derived
    classes = derived.get(ROOM_CLASSES_KEY)
    if classes is None:
        ranges = compiled.level_domain_range
        levels = [lv for lv in range(1, compiled.n_levels) if ranges[lv, 1] - ranges[lv, 0] >= 2]
        domains, node_class = distinct_rows(compiled.node_domain[levels].T)
        classes = derived[ROOM_CLASSES_KEY] = RoomClasses(
            node_class,
            domains,
            np.asarray(ranges[levels], dtype=np.int64).reshape(-1, 2),
        )
    return classes


def distinct_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(distinct, node_class)``: the distinct rows of ``rows`` (one row a node), int64 and
    C-ordered, and each node's index among them: how a cluster's nodes are classed by
    static properties (room classes here, the topology score's static classes in
    :mod:`policies.scoring.room_groups`)."""
    distinct, node_class = np.unique(rows.astype(np.int64), axis=0, return_inverse=True)
    return np.ascontiguousarray(distinct), node_class.reshape(-1).astype(np.int64)


def room_inputs(compiled: CompiledCluster) -> tuple[np.ndarray, ...]:
    """The arrays the kernels read, as one tuple (:func:`_shares` unpacks it)."""
    classes = room_classes(compiled)
    return (
        compiled.free_gpu_count,
        compiled.gpu_count,
        classes.node_class,
        classes.class_domains,
        classes.level_ranges,
        cluster_index(compiled).domain_nodes,
    )


def whole_and_shares(compiled: CompiledCluster, room: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Which nodes are whole free nodes (:mod:`policies.scoring.whole_free_counts`, kept up to
    date with the ledger) and the classes' shares, computed again only when a class's count of
    whole free nodes changed."""
    node_class, class_domains = room[2], room[3]
    counts = whole_free_counts(compiled, node_class, class_domains.shape[0])
    kept = counts.derived.get(SHARES_KEY)
    if kept is None or kept[0] != counts.version:
        kept = counts.derived[SHARES_KEY] = (counts.version, _shares(room, counts.per_class))
    return counts.whole, kept[1]


def domain_room_share(compiled: CompiledCluster, nodes: np.ndarray) -> np.ndarray:
    """For each of ``nodes``, summed over the fabric levels above the node that have more than
    one domain: the share of the node's domain that is whole free nodes other than itself
    (what a multi-node gang could still start on inside that domain)."""
    room = room_inputs(compiled)
    return _domain_room(room, *whole_and_shares(compiled, room), np.asarray(nodes, dtype=np.int64))


def packed_room_scores(
    compiled: CompiledCluster,
    nodes: np.ndarray,
    gpus: int,
    packing_weight: float,
    room_weight: float,
) -> np.ndarray:
    """The topology scorer's first two terms for each of ``nodes`` in one compiled call:
    ``-packing_weight * (free GPUs left after taking gpus) / GPUs - room_weight * domain room
    share`` (:func:`domain_room_share`), with numpy's arithmetic in numpy's order, so equal to
    computing them apart to the bit (tested); the numpy glue cost as much as the share."""
    weights = (compiled.max_gpus, gpus, packing_weight, room_weight)
    room = room_inputs(compiled)
    whole, shares = whole_and_shares(compiled, room)
    return _packed_room_scores(room, whole, shares, np.asarray(nodes, dtype=np.int64), weights)


NO_LINKS = (
    np.zeros(1, dtype=np.int32),
    np.zeros(1, dtype=np.uint64),
    np.ones((1, 1), dtype=np.bool_),
    np.zeros((1, 1)),
)
"""Link tables for :func:`best_packed_room_nodes` when the score has no link term."""


def best_packed_room_nodes(
    compiled: CompiledCluster,
    node_units: np.ndarray,
    units: int,
    gpus: int,
    packing_weight: float,
    room_weight: float,
    ties: int,
    links: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray | None:
    """The nodes with ``node_units >= units`` whose :func:`packed_room_scores` is highest,
    the lowest ``ties`` of them by index, in index order: what ranking every fitting node by
    that score and keeping the best ``ties`` positions selects first, in one pass without
    keeping the others' scores (tested equal).

    With ``links = (known, link)``, tables by (node shape, free-GPU mask), the score is the
    packed room score minus the node's ``link``; None when a fitting node's entry is not
    ``known`` yet (the caller scores the nodes as before, which fills the table)."""
    weights = (compiled.max_gpus, gpus, packing_weight, room_weight)
    fitting = np.asarray(node_units, dtype=np.int64)
    tables = NO_LINKS
    if links is not None:
        tables = (compiled.node_shape, compiled.free_gpu_mask, *links)
    room = room_inputs(compiled)
    whole, shares = whole_and_shares(compiled, room)
    best, complete = _best_packed_room_nodes(
        room, whole, shares, fitting, units, weights, ties, tables, links is not None
    )
    return best if complete else None


@njit(cache=True)
def _shares(room: tuple, whole_in_class: np.ndarray) -> np.ndarray:
    """Per class, its domain room share for a node that is not whole (row 0) and one that is
    (row 1), from the whole free nodes of each class."""
    class_domains, level_ranges, domain_nodes = room[3], room[4], room[5]
    n_classes = class_domains.shape[0]
    whole_in = np.zeros(domain_nodes.size, dtype=np.int64)
    for c in range(n_classes):
        for j in range(class_domains.shape[1]):
            whole_in[class_domains[c, j]] += whole_in_class[c]
    term = np.zeros((2, domain_nodes.size))
    for j in range(level_ranges.shape[0]):
        for d in range(level_ranges[j, 0], level_ranges[j, 1]):
            if domain_nodes[d] > 0:
                term[0, d] = whole_in[d] / domain_nodes[d]
                term[1, d] = (whole_in[d] - 1) / domain_nodes[d]
    shares = np.zeros((2, n_classes))
    for w in range(2):
        for c in range(n_classes):
            for j in range(class_domains.shape[1]):
                shares[w, c] += term[w, class_domains[c, j]]
    return shares


@njit(cache=True)
def _domain_room(
    room: tuple, whole: np.ndarray, shares: np.ndarray, nodes: np.ndarray
) -> np.ndarray:
    node_class = room[2]
    out = np.empty(nodes.size)
    for k in range(nodes.size):
        i = nodes[k]
        out[k] = shares[whole[i], node_class[i]]
    return out


@njit(cache=True)
def scorer_tables(
    whole: np.ndarray, shares: np.ndarray, weights: tuple
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(whole, shares, left_free)`` for :func:`score_terms`: the room terms, and ``(free GPUs -
    gpus) / max(GPUs, 1)`` by (GPUs, free GPUs), neither above ``max_gpus``, a table divided
    once per entry instead of once per node."""
    max_gpus, gpus = weights[0], weights[1]
    left_free = np.empty((max_gpus + 1, max_gpus + 1))
    for count in range(max_gpus + 1):
        for free in range(max_gpus + 1):
            left_free[count, free] = (free - gpus) / max(count, 1)
    return whole, shares, left_free


@njit(cache=True, inline="always")
def score_terms(
    scorer: tuple, weights: tuple, gpu_count: int, free: int, whole: int, room_class: int
) -> float:
    """The packing and room terms of a node with ``gpu_count`` GPUs, ``free`` of them free,
    ``whole`` (1 when every GPU is free) and of ``room_class``, as the scorer adds them: the
    one expression of every kernel that scores, so that their scores agree to the bit."""
    shares, left_free = scorer[1], scorer[2]
    packing_weight, room_weight = weights[2], weights[3]
    packed = left_free[gpu_count, free]
    return -packing_weight * packed - room_weight * shares[whole, room_class]


@njit(cache=True, inline="always")
def _score(room: tuple, scorer: tuple, weights: tuple, i: int) -> float:
    """Node ``i``'s packing and room terms, as the scorer adds them."""
    free_gpu_count, gpu_count, node_class = room[0], room[1], room[2]
    whole = scorer[0]
    return score_terms(scorer, weights, gpu_count[i], free_gpu_count[i], whole[i], node_class[i])


@njit(cache=True)
def _packed_room_scores(
    room: tuple, whole: np.ndarray, shares: np.ndarray, nodes: np.ndarray, weights: tuple
) -> np.ndarray:
    scorer = scorer_tables(whole, shares, weights)
    out = np.empty(nodes.size)
    for k in range(nodes.size):
        out[k] = _score(room, scorer, weights, nodes[k])
    return out


@njit(cache=True)
def _best_packed_room_nodes(
    room: tuple,
    whole: np.ndarray,
    shares: np.ndarray,
    node_units: np.ndarray,
    units: int,
    weights: tuple,
    ties: int,
    tables: tuple,
    with_links: bool,
) -> tuple[np.ndarray, bool]:
    """``(best, complete)``; ``complete`` is False when a fitting node's link is unknown or
    its score is NaN."""
    node_shape, free_gpu_mask, known, link = tables
    scorer = scorer_tables(whole, shares, weights)
    best = np.empty(ties, dtype=np.int64)
    found = 0
    top = 0.0
    for i in range(node_units.size):
        if node_units[i] < units:
            continue
        score = _score(room, scorer, weights, i)
        if with_links:
            shape, mask = node_shape[i], free_gpu_mask[i]
            if not known[shape, mask]:
                return best[:0], False
            score = score - link[shape, mask]
        if score != score:  # NaN: the ranking orders it apart, so leave it to the ranking
            return best[:0], False
        if found == 0 or score > top:
            top = score
            best[0] = i
            found = 1
        elif score == top and found < ties:
            best[found] = i
            found += 1
    return best[:found], True


def domain_room_share_reference(compiled: CompiledCluster, nodes: np.ndarray) -> np.ndarray:
    """numpy reference of :func:`domain_room_share`."""
    share = np.zeros(len(nodes))
    whole = (compiled.free_gpu_count == compiled.gpu_count) & (compiled.gpu_count > 0)
    for level in range(1, compiled.n_levels):
        lo, hi = (int(x) for x in compiled.level_domain_range[level])
        if hi - lo < 2:
            continue
        row = compiled.node_domain[level] - lo
        size = np.bincount(row, minlength=hi - lo)
        free = np.bincount(row, weights=whole, minlength=hi - lo)
        mine = row[nodes]
        share += (free[mine] - whole[nodes]) / size[mine]
    return share
