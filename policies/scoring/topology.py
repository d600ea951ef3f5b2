"""Topology scoring: prefer the node whose free GPUs give the member its fastest links.

For a member of k whole GPUs, a node scores minus the bottleneck link cost of the best
k-subset of its free GPUs (:func:`scheduler.cost.best_leftover_link`, the cost scale of
:mod:`topology.costs`), so a pair behind one PCIe switch beats a pair across sockets and any
NVSwitch node beats both. Ties go to the node left fullest, which keeps whole, well-connected
nodes free for the next large gang. Where the member's peers go (which leaf, which rack) is the
placement engine's domain search; this scorer only ranks nodes inside it.
"""

from __future__ import annotations

import numpy as np
from phalanx.policies.scoring.common import BestFitGpuPick
from phalanx.scheduler.cost import best_leftover_link
from phalanx.scheduler.gang import MemberRequest
from phalanx.topology.compiled import CompiledCluster

PACKING_WEIGHT = 0.01
"""Per fraction of the node left free: far below one link-cost step (NVLink4 = 1.0)."""


class TopologyScorer(BestFitGpuPick):
    name = "topology"
    description = "Fastest links among the node's free GPUs for the member (then pack)."

    def __init__(self) -> None:
        self._cache: dict[tuple[int, int, int], float] = {}
        self._cache_shapes: np.ndarray | None = None

    def score(
        self, compiled: CompiledCluster, request: MemberRequest, nodes: np.ndarray
    ) -> np.ndarray:
        gpu_count = np.maximum(compiled.gpu_count[nodes], 1)
        left_free = (compiled.free_gpu_count[nodes] - request.gpus) / gpu_count
        scores = -PACKING_WEIGHT * left_free.astype(np.float64)
        if request.gpus < 2:
            return scores
        return scores - self._bottleneck(compiled, request.gpus, nodes)

    def _bottleneck(self, compiled: CompiledCluster, count: int, nodes: np.ndarray) -> np.ndarray:
        if self._cache_shapes is not compiled.shape_pair_cost:
            self._cache.clear()
            self._cache_shapes = compiled.shape_pair_cost
        shapes = compiled.node_shape[nodes].astype(np.int64)
        masks = compiled.free_gpu_mask[nodes]
        links = np.empty(len(nodes))
        for i, (shape, mask) in enumerate(zip(shapes.tolist(), masks.tolist(), strict=True)):
            key = (shape, mask, count)
            link = self._cache.get(key)
            if link is None:
                free = [g for g in range(compiled.max_gpus) if mask >> g & 1]
                pair = compiled.shape_pair_cost[shape]
                link = best_leftover_link(pair[np.ix_(free, free)], count)
                self._cache[key] = link
            links[i] = link
        return links
