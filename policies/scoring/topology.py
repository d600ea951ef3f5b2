"""Topology scoring: prefer the node whose free GPUs give the member its fastest links.

For a member of k whole GPUs, a node scores minus the bottleneck link cost of the best
k-subset of its free GPUs (:func:`scheduler.cost.best_leftover_link`, the cost scale of
:mod:`topology.costs`), so a pair behind one PCIe switch beats a pair across sockets and any
NVSwitch node beats both. Ties go to the node left fullest, which keeps whole, well-connected
nodes free for the next large gang.

Across nodes the aim is the same one level up: a multi-node gang runs at the speed of the
fabric level it spans, and it can stay inside one scalable unit (or pod) only if that domain
has enough whole free nodes when it starts. So, after the links, a node scores lower the more
whole free nodes its fabric domains keep besides it: a job goes to the domain with the least
room for gangs, and inside it to the fullest node, which leaves the domains that could host a
gang (or will drain soon) alone. A gang that must span several domains of a level pays that
level's link whichever domains it uses, so it takes the smallest pieces first
(:meth:`TopologyScorer.score_domains`, which the engine consults through
:mod:`scheduler.domain_preference`) and leaves the roomiest domains whole for the next gang.
Which level a gang spans is the placement cost's choice, as for every scorer: the lowest with
a domain that holds it.
"""

from __future__ import annotations

import numpy as np
from phalanx.policies.scoring.common import BestFitGpuPick
from phalanx.policies.scoring.domain_room import best_packed_room_nodes, packed_room_scores
from phalanx.policies.scoring.room_groups import best_room_nodes_in_groups
from phalanx.scheduler.cost import best_leftover_link
from phalanx.scheduler.gang import MemberRequest
from phalanx.topology.compiled import CompiledCluster

PACKING_WEIGHT = 0.01
"""Per fraction of the node left free: far below one link-cost step (NVLink4 = 1.0)."""
DOMAIN_ROOM_WEIGHT = 0.1
"""Per fabric level above the node, times the share of the node's domain at that level that
is whole free nodes besides it. A free node of a 4-node unit weighs 0.025, more than the
whole range of node fullness (``PACKING_WEIGHT``), so a job first picks the domain with the
least room for gangs and then the fullest node in it (best fit one level up; in units of
more than 10 nodes a free node weighs less than a whole node of fullness). At most 0.1 a
level, so with the three levels of a multi-pod fabric still below the smallest step between
link costs (0.5), which keeps deciding first."""


TABLE_MAX_GPUS = 16
"""Nodes of at most this many GPUs have their links looked up in a table of every free-GPU
mask (65,536 entries a node shape at 16); larger nodes are priced one by one."""


class TopologyScorer(BestFitGpuPick):
    name = "topology"
    description = (
        "Fastest links among the node's free GPUs for the member, then the fabric domain "
        "with the least room for gangs, then the fullest node."
    )

    def __init__(self) -> None:
        self._tables: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        """GPUs wanted -> (known, link) tables by [node shape, free-GPU mask]."""
        self._cache_shapes: np.ndarray | None = None

    def score(
        self, compiled: CompiledCluster, request: MemberRequest, nodes: np.ndarray
    ) -> np.ndarray:
        scores = packed_room_scores(
            compiled, nodes, request.gpus, PACKING_WEIGHT, DOMAIN_ROOM_WEIGHT
        )
        if request.gpus < 2:
            return scores
        return scores - self._bottleneck(compiled, request.gpus, nodes)

    def best_nodes(
        self,
        compiled: CompiledCluster,
        request: MemberRequest,
        node_units: np.ndarray,
        units: int,
        ties: int,
    ) -> np.ndarray | None:
        """:class:`~scheduler.interfaces.BestNodesScorer`: the packing and room terms, and
        for two GPUs or more the link term read from the table of :meth:`_bottleneck`; None
        where that table has no entry yet for a fitting node (or nodes are too large for
        tables), so that :meth:`score` runs and fills it."""
        links = None
        if request.gpus >= 2:
            if compiled.max_gpus > TABLE_MAX_GPUS:
                return None
            links = self._table(compiled, request.gpus)
        return best_packed_room_nodes(
            compiled,
            node_units,
            units,
            request.gpus,
            PACKING_WEIGHT,
            DOMAIN_ROOM_WEIGHT,
            ties,
            links,
        )

    def best_nodes_in_groups(
        self,
        compiled: CompiledCluster,
        request: MemberRequest,
        eligible: np.ndarray,
        ties: int,
    ) -> np.ndarray | None:
        """:class:`~scheduler.interfaces.GroupedBestNodesScorer`: :meth:`best_nodes` for one
        member of whole GPUs on the ``eligible`` nodes with the cpu and memory, read from
        nodes grouped by what their score depends on (:mod:`policies.scoring.room_groups`);
        None where the groups do not serve (the search then computes every node's capacity
        and calls :meth:`best_nodes`)."""
        links = None
        if request.gpus >= 2:
            if compiled.max_gpus > TABLE_MAX_GPUS:
                return None
            links = self._table(compiled, request.gpus)
        return best_room_nodes_in_groups(
            compiled,
            request,
            eligible,
            (PACKING_WEIGHT, DOMAIN_ROOM_WEIGHT),
            ties,
            links,
            lambda shape, mask: self._link(compiled, shape, mask, request.gpus),
        )

    def score_domains(
        self,
        compiled: CompiledCluster,
        request: MemberRequest,
        domains: np.ndarray,
        room: np.ndarray,
    ) -> np.ndarray:
        """Smallest room first (the level's link costs the gang the same whichever domains
        it uses), then the busier domain: the fraction added is below one item of room."""
        capacity = np.maximum(compiled.domain_gpu_capacity[domains], 1)
        free_share = compiled.domain_free_gpus[domains] / capacity
        return -(room.astype(np.float64) + 0.5 * free_share)

    def _bottleneck(self, compiled: CompiledCluster, count: int, nodes: np.ndarray) -> np.ndarray:
        """:func:`best_leftover_link` of each node's free GPUs for ``count`` of them, looked up
        in a table by (node shape, free-GPU mask) that fills as masks are first seen: the
        extender's default scorer asks this for every fitting node of every multi-GPU member,
        and a Python pass over 10,000 nodes took 0.6-1.6 ms per placement."""
        shapes = compiled.node_shape[nodes].astype(np.int64)
        masks = compiled.free_gpu_mask[nodes].astype(np.int64)
        if compiled.max_gpus > TABLE_MAX_GPUS:
            return np.array(
                [
                    self._link(compiled, s, m, count)
                    for s, m in zip(shapes.tolist(), masks.tolist(), strict=True)
                ]
            )
        known, links = self._table(compiled, count)
        missing = ~known[shapes, masks]
        if missing.any():
            pairs = zip(shapes[missing].tolist(), masks[missing].tolist(), strict=True)
            for shape, mask in set(pairs):
                links[shape, mask] = self._link(compiled, shape, mask, count)
                known[shape, mask] = True
        return links[shapes, masks]

    def _table(self, compiled: CompiledCluster, count: int) -> tuple[np.ndarray, np.ndarray]:
        """``(known, link)`` by [node shape, free-GPU mask] for ``count`` GPUs, kept per
        cluster shape table (a new cluster starts them afresh)."""
        if self._cache_shapes is not compiled.shape_pair_cost:
            self._tables.clear()
            self._cache_shapes = compiled.shape_pair_cost
        table = self._tables.get(count)
        if table is None:
            size = (compiled.shape_pair_cost.shape[0], 1 << compiled.max_gpus)
            table = self._tables[count] = (np.zeros(size, dtype=bool), np.zeros(size))
        return table

    @staticmethod
    def _link(compiled: CompiledCluster, shape: int, mask: int, count: int) -> float:
        free = [g for g in range(compiled.max_gpus) if mask >> g & 1]
        pair = compiled.shape_pair_cost[shape]
        return best_leftover_link(pair[np.ix_(free, free)], count)
