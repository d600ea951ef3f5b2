"""The FGD paper's baseline scorers, as its artifact implements them
(hkust-adsl/kubernetes-scheduler-simulator, ``pkg/simulator/plugin``), so the simulator can
reproduce the paper's allocation table.

Each returns the artifact's integer score (0..100) plus a jitter below one point that follows
one seeded node order for the whole run: the artifact's scheduler gives a tie to the node whose
(randomly prefixed) name sorts first, not to a random one (:mod:`.tie_break`). Only BestFit
normalises its scores (``NormalizeScore``, integer min-max to 0..100), which keeps their order
and ties and so is left out; Random picks a node uniformly among the feasible ones. Where the
artifact normalises by its constants ``MaxSpecCpu = 128000`` and ``MaxSpecGpu = 8000``, we use
the cluster's largest node (the same numbers on the openb cluster). GPU picks for shares
follow the artifact's experiment settings (``generate_run_scripts.py``): random for Random,
best fit (the tightest GPU that fits, lowest index on ties) for the others.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from policies.scoring.common import BestFitGpuPick, fitting_gpus, free_milli
from policies.scoring.tie_break import TieBreaker
from scheduler.gang import MemberRequest
from scheduler.state import ClusterState
from topology.compiled import CompiledCluster
from topology.model import MILLI_PER_GPU

MAX_SCORE = 100
HALF_WEIGHT = 0.5
"""BestFit and DotProd weigh cpu and GPU equally."""
CLUSTERING_BAND = MAX_SCORE // 4
"""GpuClustering's four score bands of 25 points."""
PACKING_WHOLE_NODE = MAX_SCORE // 3
PACKING_USED_NODE = MAX_SCORE // 2
PACKING_SHARE_DIVISOR = 10
"""GpuPacking's bands: idle node (<= 33), whole GPUs on a used node (33..50), shared GPUs
(50..100, minus a tenth of the chosen GPU's free percentage)."""


def max_spec(compiled: CompiledCluster) -> tuple[float, float]:
    """(largest node cpu in milli, largest node GPU capacity in milli)."""
    cpu = float(compiled.cpu_capacity_milli.max())
    gpu = float(compiled.gpu_count.max()) * MILLI_PER_GPU
    return max(cpu, 1.0), max(gpu, 1.0)


def free_vectors(compiled: CompiledCluster, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(free cpu milli, total free milli-GPU) of ``nodes``."""
    return (
        compiled.cpu_free_milli[nodes].astype(np.float64),
        free_milli(compiled, nodes).sum(axis=1).astype(np.float64),
    )


class RandomScorer:
    name = "random"
    description = "FGD baseline: a uniformly random feasible node (and GPU for a share)."

    def __init__(self, seed: int = 0) -> None:
        self.tie_breaker = TieBreaker(seed)

    def score(
        self, compiled: CompiledCluster, request: MemberRequest, nodes: np.ndarray
    ) -> np.ndarray:
        return self.tie_breaker.rng.random(len(nodes))

    def pick_gpu(self, compiled: CompiledCluster, request: MemberRequest, node: int) -> int | None:
        if not request.is_fractional:
            return None
        return self.tie_breaker.choice(fitting_gpus(compiled, request, node))


class DotProductScorer(BestFitGpuPick):
    """Tetris' dot product of free and requested (cpu, GPU), each normalised by the largest
    node; as in the artifact a *larger* product scores *lower* (``1 - dot / 2``)."""

    name = "dotprod"
    description = "FGD baseline: DotProduct of request and node free vector (Tetris)."

    def __init__(self, seed: int = 0) -> None:
        self.tie_breaker = TieBreaker(seed)

    def score(
        self, compiled: CompiledCluster, request: MemberRequest, nodes: np.ndarray
    ) -> np.ndarray:
        cpu_max, gpu_max = max_spec(compiled)
        cpu_free, gpu_free = free_vectors(compiled, nodes)
        dot = (cpu_free / cpu_max) * (request.cpu_milli / cpu_max) + (gpu_free / gpu_max) * (
            request.gpu_milli_total / gpu_max
        )
        return self.tie_breaker.integer_scores(
            compiled, nodes, np.floor(MAX_SCORE * (1.0 - HALF_WEIGHT * dot))
        )


class BestFitScorer(BestFitGpuPick):
    name = "bestfit"
    description = "FGD baseline: least (cpu, GPU) left over after placing, equally weighted."

    def __init__(self, seed: int = 0) -> None:
        self.tie_breaker = TieBreaker(seed)

    def score(
        self, compiled: CompiledCluster, request: MemberRequest, nodes: np.ndarray
    ) -> np.ndarray:
        cpu_max, gpu_max = max_spec(compiled)
        cpu_free, gpu_free = free_vectors(compiled, nodes)
        left = (
            HALF_WEIGHT * (cpu_free - request.cpu_milli) / cpu_max
            + HALF_WEIGHT * (gpu_free - request.gpu_milli_total) / gpu_max
        )
        return self.tie_breaker.integer_scores(compiled, nodes, np.floor(MAX_SCORE * (1.0 - left)))


class GpuPackingScorer(BestFitGpuPick):
    """Prefer shared GPUs, then whole GPUs on already used nodes, then idle nodes."""

    name = "gpu-packing"
    description = "FGD baseline: shared GPUs first, then used nodes, then idle nodes."

    def __init__(self, seed: int = 0) -> None:
        self.tie_breaker = TieBreaker(seed)

    def score(
        self, compiled: CompiledCluster, request: MemberRequest, nodes: np.ndarray
    ) -> np.ndarray:
        if request.gpu_milli_total == 0:
            return self.tie_breaker.integer_scores(compiled, nodes, np.zeros(len(nodes)))
        free = free_milli(compiled, nodes)
        whole_free = compiled.free_gpu_count[nodes].astype(np.int64)
        idle = whole_free == compiled.gpu_count[nodes]
        idle_score = np.maximum(PACKING_WHOLE_NODE - whole_free, whole_free)
        if request.is_fractional:
            room = np.where(free >= request.gpu_milli, free, MILLI_PER_GPU + 1)
            chosen_free = room.min(axis=1)
            percent = chosen_free * MAX_SCORE // MILLI_PER_GPU
            share_score = np.maximum(
                MAX_SCORE - percent // PACKING_SHARE_DIVISOR, PACKING_USED_NODE
            )
            used_score = np.where(
                chosen_free == MILLI_PER_GPU,
                max(PACKING_USED_NODE - 1, PACKING_WHOLE_NODE),
                share_score,
            )
        else:
            used_score = np.full(
                len(nodes), max(PACKING_USED_NODE - request.gpus, PACKING_WHOLE_NODE)
            )
        return self.tie_breaker.integer_scores(
            compiled, nodes, np.where(idle, idle_score, used_score)
        )


class GpuClusteringScorer(BestFitGpuPick):
    """Put a pod with nodes already running pods of its own GPU shape ("share", "1-gpu",
    "2-gpu"...): nodes hosting only that shape score 75..100, mixed nodes including it 50..75,
    idle nodes 25..50, other nodes 0..25; inside a band, fuller nodes first. The shapes of the
    pods on each node come from the ledger, so the scorer must be bound to the cluster state
    (the scheduling cycle does this through ``bind_state``)."""

    name = "gpu-clustering"
    description = "FGD baseline: nodes already running pods of the same GPU shape first."

    def __init__(self, seed: int = 0) -> None:
        self.tie_breaker = TieBreaker(seed)
        self.state: ClusterState | None = None
        self._seen: dict[str, list[tuple[int, str]]] = {}
        self._shapes: dict[int, Counter[str]] = {}

    def bind_state(self, state: ClusterState) -> None:
        if state is not self.state:
            self.state = state
            self._seen, self._shapes = {}, {}

    def score(
        self, compiled: CompiledCluster, request: MemberRequest, nodes: np.ndarray
    ) -> np.ndarray:
        shape = (
            shape_of(1, request.gpu_milli)
            if request.is_fractional
            else shape_of(request.gpus, MILLI_PER_GPU)
        )
        if shape is None:
            return self.tie_breaker.integer_scores(compiled, nodes, np.zeros(len(nodes)))
        self._refresh()
        _, gpu_max = max_spec(compiled)
        gpu_free = free_milli(compiled, nodes).sum(axis=1)
        fullness = (CLUSTERING_BAND * (gpu_max - gpu_free)) // gpu_max
        band = np.empty(len(nodes), dtype=np.int64)
        for i, node in enumerate(np.asarray(nodes).tolist()):
            shapes = self._shapes.get(node, Counter())
            if shapes[shape] > 0:
                band[i] = 3 if len(shapes) == 1 else 2
            else:
                band[i] = 1 if not shapes else 0
        return self.tie_breaker.integer_scores(compiled, nodes, fullness + CLUSTERING_BAND * band)

    def _refresh(self) -> None:
        if self.state is None:
            raise ValueError(
                "the gpu-clustering scorer ranks nodes by the pods already on them: bind it to "
                "the cluster state first (SchedulingCycle does; or call bind_state(state))"
            )
        holdings = self.state.holdings
        for gang in self._seen.keys() - holdings.keys():
            for node, shape in self._seen.pop(gang):
                counter = self._shapes[node]
                counter[shape] -= 1
                if counter[shape] == 0:
                    del counter[shape]
        for gang in holdings.keys() - self._seen.keys():
            entries = [
                (m.node_index, s)
                for m in holdings[gang].placement.members
                if (s := shape_of(len(m.gpus), m.gpu_milli)) is not None
            ]
            for node, shape in entries:
                self._shapes.setdefault(node, Counter())[shape] += 1
            self._seen[gang] = entries


def shape_of(gpus: int, gpu_milli: int) -> str | None:
    """The artifact's GPU affinity tag: "share", "<n>-gpu", or None for no GPU."""
    if gpus == 0:
        return None
    if gpu_milli < MILLI_PER_GPU:
        return "share"
    return f"{gpus}-gpu"
