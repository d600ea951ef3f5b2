"""Which nodes are whole free nodes, and how many each room class has, kept up to date.

The domain room term (:mod:`policies.scoring.domain_room`) needs both for every scored
placement, and counting them is a pass over every node (about 17 us of the term's 40 us on
10,000 nodes). Between two placements one or two nodes change, so the counts of a free state
follow its ledger through :attr:`topology.compiled.CompiledCluster.changed_nodes` (every
allocate and release appends its node), as the free-state groups of
:mod:`scheduler.free_state_buckets` do: a query re-reads only the nodes written since the last
one, and counts afresh when the log was started over. Counts are integers, so the kept ones
equal a fresh count exactly (tested through random allocations and releases). A what-if copy
has its own arrays and so its own counts, built only at its third question (one asked once
counts afresh, as before).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import numpy as np
from numba import njit
from phalanx.scheduler.free_state_buckets import BUILD_AFTER_QUERIES
from phalanx.topology.compiled import CompiledCluster


@njit(cache=True, inline="always")
def _is_whole(free_gpu_count: np.ndarray, gpu_count: np.ndarray, i: int) -> np.uint8:
    """1 when node ``i`` has GPUs and every one is free (a whole free node), else 0."""
    return np.uint8((gpu_count[i] > 0) & (free_gpu_count[i] == gpu_count[i]))


@njit(cache=True)
def count_whole(
    free_gpu_count: np.ndarray, gpu_count: np.ndarray, node_class: np.ndarray, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(whole, per_class)``: per node 1 when it is a whole free node (else 0), and the
    whole free nodes of each class."""
    n = free_gpu_count.size
    whole = np.empty(n, dtype=np.uint8)
    per_class = np.zeros(n_classes, dtype=np.int64)
    # without a branch on whether a node is whole (unpredictable on a half-full cluster), and
    # counting a run of one class's nodes in a register (their classes come in runs)
    run_class, run_whole = 0, 0
    for i in range(n):
        w = _is_whole(free_gpu_count, gpu_count, i)
        whole[i] = w
        c = node_class[i]
        if c != run_class:
            per_class[run_class] += run_whole
            run_class, run_whole = c, 0
        run_whole += w
    if n_classes:
        per_class[run_class] += run_whole
    return whole, per_class


@njit(cache=True)
def _recount(
    nodes: np.ndarray,
    free_gpu_count: np.ndarray,
    gpu_count: np.ndarray,
    node_class: np.ndarray,
    whole: np.ndarray,
    per_class: np.ndarray,
) -> bool:
    """Re-read ``nodes`` (repeats allowed) into ``whole`` and ``per_class``; whether any
    class's count changed."""
    changed = False
    for k in range(nodes.size):
        i = nodes[k]
        w = _is_whole(free_gpu_count, gpu_count, i)
        if w != whole[i]:
            per_class[node_class[i]] += np.int64(w) - np.int64(whole[i])
            whole[i] = w
            changed = True
    return changed


@dataclass
class WholeFreeCounts:
    """The counts of one free state, read up to ``seen`` entries of its change ``log``."""

    whole: np.ndarray
    """uint8 [nodes]: 1 for a whole free node."""
    per_class: np.ndarray
    """int64 [classes]: whole free nodes per room class."""
    log: list[int]
    seen: int
    version: int = 0
    """Bumped whenever ``per_class`` changes (what is derived from it can be kept until then)."""
    derived: dict[str, tuple[int, np.ndarray]] = field(default_factory=dict)
    """What readers compute from ``per_class``, with the ``version`` it was computed at."""


_COUNTS: dict[int, WholeFreeCounts | int] = {}
"""Counts by free state (the id of its ``free_gpu_count``), or how often a state without
counts has been asked."""


def whole_free_counts(
    compiled: CompiledCluster, node_class: np.ndarray, n_classes: int
) -> WholeFreeCounts:
    """The counts of ``compiled``'s free state as they are now; a fresh count (not kept) for
    the first questions about a state."""
    key = id(compiled.free_gpu_count)
    kept = _COUNTS.get(key)
    if isinstance(kept, WholeFreeCounts):
        _catch_up(kept, compiled, node_class, n_classes)
        return kept
    if kept is None:
        weakref.finalize(compiled.free_gpu_count, _COUNTS.pop, key, None)
    counts = _fresh(compiled, node_class, n_classes)
    asked = (kept or 0) + 1
    _COUNTS[key] = counts if asked >= BUILD_AFTER_QUERIES else asked
    return counts


def _fresh(compiled: CompiledCluster, node_class: np.ndarray, n_classes: int) -> WholeFreeCounts:
    log = compiled.changed_nodes
    whole, per_class = count_whole(
        compiled.free_gpu_count, compiled.gpu_count, node_class, n_classes
    )
    return WholeFreeCounts(whole, per_class, log, len(log))


def _catch_up(
    counts: WholeFreeCounts, compiled: CompiledCluster, node_class: np.ndarray, n_classes: int
) -> None:
    log = compiled.changed_nodes
    if log is not counts.log or len(log) < counts.seen:
        fresh = _fresh(compiled, node_class, n_classes)
        counts.whole, counts.per_class = fresh.whole, fresh.per_class
        counts.log, counts.seen = fresh.log, fresh.seen
        counts.version += 1
        return
    if len(log) == counts.seen:
        return
    nodes = np.array(log[counts.seen :], dtype=np.int64)
    counts.seen = len(log)
    if _recount(
        nodes,
        compiled.free_gpu_count,
        compiled.gpu_count,
        node_class,
        counts.whole,
        counts.per_class,
    ):
        counts.version += 1
