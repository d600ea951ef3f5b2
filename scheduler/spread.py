"""How a count of units is split over a domain's subtree: the fewest children first (the largest
until the rest fits in one, then the best-fitting one), nodes of equal room told apart by what
taking them would cost, or in a scorer's order: its node scores for nodes, its domain scores
(:mod:`scheduler.domain_preference`) for domains above the node, where it has them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numba import njit
from phalanx.scheduler.cost import FRAGMENTATION_WEIGHT
from phalanx.scheduler.domain_preference import domain_scores
from phalanx.scheduler.kernels import single_node_costs
from phalanx.scheduler.scratch import Scratch
from phalanx.scheduler.unit_classes import UnitClass

if TYPE_CHECKING:
    from phalanx.scheduler.search import Search


@dataclass
class Spread:
    """Splits a count of units (or members) of one class over a domain's subtree."""

    search: Search
    cls: UnitClass
    scratch: Scratch

    def __call__(
        self,
        domain: int,
        level: int,
        need: int,
        caps: np.ndarray,
        stop_level: int,
        item_members: int,
    ) -> list[tuple[int, int]]:
        """Split ``need`` items (of ``item_members`` members each) over ``domain``'s
        descendants at ``stop_level``."""
        if level == stop_level:
            return [(domain, need)]
        s = self.search
        kids = s.index.children(domain)
        kid_caps = caps[kids]
        if s.scorer is not None and level == 1:
            fitting = np.flatnonzero(kid_caps > 0)
            score = np.asarray(
                s.scorer.score(s.compiled, self.cls.request, kids[fitting]), dtype=np.float64
            )
            order = fitting[np.lexsort((kids[fitting], -kid_caps[fitting], -score))]
            picks = take_in_order(kid_caps, order, need)
        elif level == 1:
            tie = self._node_costs(kids, item_members)
            if not self.cls.request.gpu_milli_total:
                # room for cpu is not what the cost function prices: among the nodes with room
                # for all of it, the one the placement leaves least stranded wins
                kid_caps = np.minimum(kid_caps, need)
            picks = fewest_children(kid_caps, tie, kids, need)
        else:
            picks = self._domain_picks(kids, kid_caps, need)
        out: list[tuple[int, int]] = []
        for pos, count in picks:
            out.extend(self(int(kids[pos]), level - 1, count, caps, stop_level, item_members))
        return out

    def _domain_picks(
        self, kids: np.ndarray, kid_caps: np.ndarray, need: int
    ) -> list[tuple[int, int]]:
        """Children that are domains: in the scorer's domain order when it has one (each taken
        as far as it goes), else the fewest children, busier ones first on ties."""
        s = self.search
        if s.scorer is not None:
            fitting = np.flatnonzero(kid_caps > 0)
            room = kid_caps[fitting]
            score = domain_scores(s.scorer, s.compiled, self.cls.request, kids[fitting], room)
            if score is not None:
                return take_in_order(kid_caps, fitting[np.lexsort((kids[fitting], -score))], need)
        return fewest_children(kid_caps, s.compiled.domain_free_gpus[kids], kids, need)

    def _node_costs(self, nodes: np.ndarray, item_members: int) -> np.ndarray:
        """Single-node proxy cost of one item on each node: best fit, then the NUMA and
        leftover-link penalties of its GPU set, so that nodes of equal room are told apart by
        what taking them would cost (links between nodes are the level's, whichever node).
        A node the gang already uses costs a CPU-only member nothing more."""
        s = self.search
        c = s.compiled
        request = self.cls.request
        cost = single_node_costs(
            nodes,
            request.gpu_milli_total * item_members,
            c.gpu_used_milli,
            c.gpu_usable,
            FRAGMENTATION_WEIGHT,
            s.index.choice_shape,
            c.free_gpu_mask,
            *s.tables(request.gpus * item_members, request.gpus),
            0.0,
        )
        if not request.gpu_milli_total and self.scratch.used:
            cost[np.isin(nodes, list(self.scratch.used))] = 0.0
        return cost


def smallest(key: np.ndarray, count: int) -> np.ndarray:
    """Positions of the ``count`` smallest keys (lowest positions among equal keys), in
    position order; linear time, unlike sorting every fitting node."""
    if key.size <= count:
        return np.arange(key.size)
    cut = np.partition(key, count - 1)[count - 1]
    below = np.flatnonzero(key < cut)
    equal = np.flatnonzero(key == cut)[: count - below.size]
    return np.sort(np.concatenate([below, equal]))


def fewest_children(
    caps: np.ndarray, busy: np.ndarray, ids: np.ndarray, need: int
) -> list[tuple[int, int]]:
    """Positions and counts covering ``need`` with the fewest children: the largest first
    until the rest fits in one, then the best-fitting child for the rest (busier ones first
    on ties, then lower ids). Compiled (:func:`fewest_children_kernel`); the numpy reference
    raises where the children cannot hold ``need``."""
    positions, counts, ok = fewest_children_kernel(caps, busy, ids, need)
    if not ok:
        return reference_fewest_children(caps, busy, ids, need)
    return list(zip(positions.tolist(), counts.tolist(), strict=True))


@njit(cache=True)
def fewest_children_kernel(
    caps: np.ndarray, busy: np.ndarray, ids: np.ndarray, need: int
) -> tuple[np.ndarray, np.ndarray, bool]:
    """:func:`reference_fewest_children` without its temporaries: children ranked by (room
    descending, busy, id) with three stable sorts (NaN busy keys last, as ``np.lexsort``
    orders them), the largest taken until the rest fits in one, then the first of the
    tightest that holds the rest. False (and nothing) when the children cannot hold
    ``need``."""
    n = caps.shape[0]
    empty = np.zeros(0, dtype=np.int64)
    order = np.argsort(ids, kind="mergesort")
    order = order[np.argsort(busy[order], kind="mergesort")]
    order = order[np.argsort(-caps[order], kind="mergesort")]
    before = 0
    stop = -1
    for k in range(n):
        if caps[order[k]] >= need - before:
            stop = k
            break
        before += caps[order[k]]
    if stop < 0:
        return empty, empty, False
    rest = need - before
    pick = stop  # the first of the smallest rooms, from stop on, that still hold the rest
    for k in range(stop + 1, n):
        room = caps[order[k]]
        if room < rest:
            break
        if room < caps[order[pick]]:
            pick = k
    positions = np.empty(stop + 1, dtype=np.int64)
    counts = np.empty(stop + 1, dtype=np.int64)
    for k in range(stop):
        positions[k] = order[k]
        counts[k] = caps[order[k]]
    positions[stop] = order[pick]
    counts[stop] = rest
    return positions, counts, True


def reference_fewest_children(
    caps: np.ndarray, busy: np.ndarray, ids: np.ndarray, need: int
) -> list[tuple[int, int]]:
    """numpy reference of :func:`fewest_children` (vectorised: flat domains may have
    thousands of children)."""
    order = np.lexsort((ids, busy, -caps))
    ranked = caps[order]
    before = np.concatenate(([0], np.cumsum(ranked)[:-1]))
    remaining = need - before
    stop = int(np.flatnonzero(ranked >= remaining)[0])
    rest = remaining[stop]
    tail = -ranked[stop:]
    fitting_end = stop + int(np.searchsorted(tail, -rest, side="right"))
    tightest = ranked[fitting_end - 1]
    pick = stop + int(np.searchsorted(tail, -tightest, side="left"))
    picks = [(int(order[i]), int(ranked[i])) for i in range(stop)]
    picks.append((int(order[pick]), int(rest)))
    return picks


def take_in_order(caps: np.ndarray, order: np.ndarray, need: int) -> list[tuple[int, int]]:
    """Fill children in the given order, each as far as it goes."""
    ranked = caps[order]
    before = np.concatenate(([0], np.cumsum(ranked)[:-1]))
    take = np.clip(np.minimum(ranked, need - before), 0, None)
    return [(int(order[i]), int(take[i])) for i in np.flatnonzero(take)]
