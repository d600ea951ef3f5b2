"""A weighted sum of scorers (``"0.7*topology+0.3*fgd"``).

Scorers speak different units (link costs, GPUs of fragmentation, 0..100 points), so each
component's scores are min-max normalised over the candidate nodes before weighting, as
kube-scheduler normalises every score plugin to 0..100 before applying plugin weights. For a
share, the heaviest component with an opinion picks the GPU. Domains above the node (for a gang
spanning several) are ranked the same way by the components that have a view on them
(:mod:`scheduler.domain_preference`); without any, the engine's own rule applies.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from phalanx.scheduler.domain_preference import domain_scores
from phalanx.scheduler.gang import MemberRequest
from phalanx.scheduler.interfaces import PlacementScorer, StateObserver
from phalanx.scheduler.state import ClusterState
from phalanx.topology.compiled import CompiledCluster


def min_max(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return scores
    low, high = float(scores.min()), float(scores.max())
    if high <= low:
        return np.zeros_like(scores)
    return (scores - low) / (high - low)


class WeightedScorer:
    def __init__(self, parts: Sequence[tuple[float, PlacementScorer]]) -> None:
        if not parts:
            raise ValueError("a weighted scorer needs at least one part")
        for weight, scorer in parts:
            if not weight > 0:
                raise ValueError(f"weight of scorer {scorer.name!r} must be positive, got {weight}")
        self.parts = list(parts)
        self.name = "+".join(f"{w:g}*{s.name}" for w, s in self.parts)

    def score(
        self, compiled: CompiledCluster, request: MemberRequest, nodes: np.ndarray
    ) -> np.ndarray:
        total = np.zeros(len(nodes))
        for weight, scorer in self.parts:
            total += weight * min_max(scorer.score(compiled, request, nodes))
        return total

    def score_domains(
        self,
        compiled: CompiledCluster,
        request: MemberRequest,
        domains: np.ndarray,
        room: np.ndarray,
    ) -> np.ndarray | None:
        """The weighted sum of the parts' normalised domain scores, over the parts that have
        a view on domains (a ``topology`` part keeps its say in a mix); None without any."""
        total: np.ndarray | None = None
        for weight, scorer in self.parts:
            scores = domain_scores(scorer, compiled, request, domains, room)
            if scores is not None:
                total = (0.0 if total is None else total) + weight * min_max(scores)
        return total

    def pick_gpu(self, compiled: CompiledCluster, request: MemberRequest, node: int) -> int | None:
        for _, scorer in sorted(self.parts, key=lambda part: -part[0]):
            gpu = scorer.pick_gpu(compiled, request, node)
            if gpu is not None:
                return gpu
        return None

    def bind_state(self, state: ClusterState) -> None:
        for _, scorer in self.parts:
            if isinstance(scorer, StateObserver):
                scorer.bind_state(state)
