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

import numpy as np
from phalanx.policies.scoring.common import BestFitGpuPick, fitting_gpus, free_milli
from phalanx.policies.scoring.tie_break import TieBreaker
from phalanx.scheduler.gang import MemberRequest
from phalanx.scheduler.state import ClusterState, Holding
from phalanx.topology.compiled import CompiledCluster
from phalanx.topology.model import MILLI_PER_GPU

MAX_SCORE = 100
HALF_WEIGHT = 0.5
"""BestFit and DotProd weigh cpu and GPU equally."""
CLUSTERING_BAND = MAX_SCORE // 4
"""GpuClustering's four score bands of 25 points."""
BAND_ONLY_SAME_SHAPE = 3
BAND_SAME_SHAPE_MIXED = 2
BAND_IDLE = 1
BAND_OTHER_SHAPES = 0
"""GpuClustering's bands, best first: the node runs only pods of the pod's shape; that shape
among others; nothing; only other shapes."""
SHARE_SHAPE = 0
"""GpuClustering's shape column for shares (column n counts pods of n whole GPUs)."""
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
        self._census: NodeShapeCensus | None = None

    def bind_state(self, state: ClusterState) -> None:
        if state is not self.state:
            self.state = state
            self._census = NodeShapeCensus(state.compiled)

    def score(
        self, compiled: CompiledCluster, request: MemberRequest, nodes: np.ndarray
    ) -> np.ndarray:
        shape = (
            shape_index(1, request.gpu_milli)
            if request.is_fractional
            else shape_index(request.gpus, MILLI_PER_GPU)
        )
        if shape is None:
            return self.tie_breaker.integer_scores(compiled, nodes, np.zeros(len(nodes)))
        if self.state is None or self._census is None:
            raise ValueError(
                "the gpu-clustering scorer ranks nodes by the pods already on them: bind it to "
                "the cluster state first (SchedulingCycle does; or call bind_state(state))"
            )
        census = self._census
        census.sync(self.state.holdings)
        _, gpu_max = max_spec(compiled)
        gpu_free = free_milli(compiled, nodes).sum(axis=1)
        fullness = (CLUSTERING_BAND * (gpu_max - gpu_free)) // gpu_max
        kinds = census.distinct[nodes]
        if shape < census.counts.shape[1]:
            hosts_shape = census.counts[nodes, shape] > 0
        else:
            hosts_shape = np.zeros(len(nodes), dtype=bool)
        band = np.where(
            hosts_shape,
            np.where(kinds == 1, BAND_ONLY_SAME_SHAPE, BAND_SAME_SHAPE_MIXED),
            np.where(kinds == 0, BAND_IDLE, BAND_OTHER_SHAPES),
        )
        return self.tie_breaker.integer_scores(compiled, nodes, fullness + CLUSTERING_BAND * band)


class NodeShapeCensus:
    """How many pods of each GPU shape every node runs, kept in step with a ledger's holdings.

    The ledger has no change feed, and comparing every holding on every call made the scorer
    quadratic in the number of running pods. :meth:`sync` instead relies on two facts of
    ``ClusterState.holdings``: it is a dict, so a gang reserved since the last sync sits after
    every older one, and each reservation is a new ``Holding`` object. Walking back from the
    newest holding to the first one already counted finds every new gang; a full scan runs only
    when some counted gang is gone.
    """

    def __init__(self, compiled: CompiledCluster) -> None:
        self.counts = np.zeros((compiled.n_nodes, compiled.max_gpus + 1), dtype=np.int64)
        """[node, shape]: pods of each shape (:func:`shape_index`) on each node."""
        self.distinct = np.zeros(compiled.n_nodes, dtype=np.int64)
        """Per node: how many different shapes it runs."""
        self._counted: dict[str, tuple[Holding, list[tuple[int, int]]]] = {}

    def sync(self, holdings: dict[str, Holding]) -> None:
        """Count the gangs reserved since the last call and discount the ones released."""
        new: list[tuple[str, Holding]] = []
        for gang in reversed(holdings):
            holding = holdings[gang]
            counted = self._counted.get(gang)
            if counted is not None and counted[0] is holding:
                break
            new.append((gang, holding))
        if len(self._counted) > len(holdings) - len(new):
            for gang in [g for g, (h, _) in self._counted.items() if holdings.get(g) is not h]:
                self._update(self._counted.pop(gang)[1], -1)
        for gang, holding in reversed(new):
            entries = [
                (m.node_index, s)
                for m in holding.placement.members
                if (s := shape_index(len(m.gpus), m.gpu_milli)) is not None
            ]
            self._update(entries, 1)
            self._counted[gang] = (holding, entries)

    def _update(self, entries: list[tuple[int, int]], step: int) -> None:
        for node, shape in entries:
            self.counts[node, shape] += step
        touched = [node for node, _ in entries]
        self.distinct[touched] = np.count_nonzero(self.counts[touched], axis=1)


def shape_index(gpus: int, gpu_milli: int) -> int | None:
    """The artifact's GPU affinity tag as a column of :attr:`NodeShapeCensus.counts`:
    ``SHARE_SHAPE`` for "share", n for "<n>-gpu", or None for no GPU."""
    if gpus == 0:
        return None
    if gpu_milli < MILLI_PER_GPU:
        return SHARE_SHAPE
    return gpus
