"""Tie-breaking among equal integer scores, as the FGD artifact's scheduler does it.

The FGD artifact's plugins return integer scores (0..100). Its kube-scheduler fork
(``mental2008/kubernetes`` v1.20.5-minor, ``selectHost``) does not pick at random among the
nodes sharing the top score, as upstream does: "for reproducibility" it takes the one whose
name sorts first, and the simulator names every node with a prefix drawn from a seeded random
permutation (``syncClusterResourceList``). Ties therefore follow one random node order that is
fixed for the whole run, which keeps landing tied pods on the same nodes: worth 1.5 to 8
points of GPU allocation at 130% demand to GpuPacking and GpuClustering on the openb traces,
where most candidates tie (see docs/policies.md). Adding below one score step a jitter that
follows that order gives the same choice through a plain argmax.
"""

from __future__ import annotations

import numpy as np
from phalanx.topology.compiled import CompiledCluster

TIE_JITTER = 0.5
"""Below the step between integer scores, so jitter only ever reorders equal scores."""


class TieBreaker:
    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self._jitter = np.empty(0)

    def integer_scores(
        self, compiled: CompiledCluster, nodes: np.ndarray, scores: np.ndarray
    ) -> np.ndarray:
        """``scores`` of ``nodes`` plus the jitter of the run's node order: the earliest node in
        that order wins a tie."""
        n_nodes = compiled.n_nodes
        if self._jitter.size != n_nodes:
            rank = self.rng.permutation(n_nodes)
            self._jitter = (n_nodes - rank) / (n_nodes + 1) * TIE_JITTER
        return np.asarray(scores, dtype=np.float64) + self._jitter[np.asarray(nodes)]

    def choice(self, options: np.ndarray) -> int | None:
        """One of ``options`` uniformly, or None if there are none."""
        return int(self.rng.choice(options)) if len(options) else None
