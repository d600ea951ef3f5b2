"""FGD plus CPU stranding: fragmentation gradient descent that also counts GPUs a node's CPU
can no longer feed.

FGD (:mod:`.fgd`) measures fragmentation per task type, so a node whose CPU is nearly gone
only counts as fragmented once the workload's tasks no longer fit it. Until then, FGD's ties
(one artifact point is about 40 milli-GPU) are broken by the run's fixed node order, which
packs CPU-heavy GPU pods onto whichever node comes first: on the openb traces, where a G2 node
has 12 cores per GPU and a 1-GPU pod asks 11.4 cores at the median and 24.2 at worst, nodes end
with free GPUs and no CPU to run anything on them.

This scorer adds the growth of a second, node-level quantity to FGD's fragmentation delta,
in the same unit (milli-GPU)::

    stranded(node) = max(0, free_gpu_milli - cpu_free_milli / rho)
    delta          = (frag_before - frag_after) - weight * (stranded_after - stranded_before)
    score          = floor(100 * sigmoid(delta / 1000))      # FGD's artifact points

``rho`` is the target workload's CPU per milli-GPU (the popularity-weighted mean over its GPU
task types): free GPU milli beyond ``cpu_free / rho`` is capacity that pods of the workload's
average shape could not use for lack of CPU. A workload without CPU figures (the built-in
default one, which the extender uses unless given a workload) falls back to the CPU per
milli-GPU of the cluster's GPU nodes; ``cpu_per_gpu_milli`` sets it outright. Equal points are
broken by the run's fixed node order and a share goes to FGD's GPU, both exactly as
:class:`.fgd.FgdScorer` does, so with ``weight=0`` the choices are FGD's.

The term applies to GPU pods only; CPU-only pods are scored by FGD alone. Applied to every
pod it also steered CPU-only pods onto the CPU-rich nodes, and on the openb cpu250 list (many
CPU-only pods) it lost 0.2 points of allocation to FGD (weight 3), where on GPU pods only it
gained 2.0 (weight 1; seeds 42-43, docs/simulator.md, "Beyond FGD").
"""

from __future__ import annotations

import numpy as np
from phalanx.policies.scoring.fgd import FgdScorer, artifact_points
from phalanx.policies.scoring.fgd_workload import Workload
from phalanx.policies.scoring.tie_break import TieBreaker
from phalanx.scheduler.gang import MemberRequest
from phalanx.topology.compiled import CompiledCluster
from phalanx.topology.model import MILLI_PER_GPU

DEFAULT_STRANDING_WEIGHT = 1.0
"""Stranded milli-GPU count as much as fragmented milli-GPU (on the openb default list, 1, 3
and 10 all gave 95.9% allocated at 130% demand; 1 was best on cpu250)."""


def cpu_milli_per_gpu_milli(workload: Workload) -> float:
    """The workload's CPU per milli-GPU: popularity-weighted over its GPU task types (0 when
    it has none, which switches the stranding term off)."""
    cpu = gpu = 0.0
    for task, popularity in zip(workload.tasks, workload.popularity, strict=True):
        if task.gpus:
            cpu += popularity * task.cpu_milli
            gpu += popularity * task.gpus * task.gpu_milli
    return cpu / gpu if gpu > 0 else 0.0


def stranded_milli(
    free_gpu_milli: np.ndarray, cpu_free_milli: np.ndarray, cpu_per_gpu_milli: float
) -> np.ndarray:
    """Free GPU milli beyond what the free CPU could feed at ``cpu_per_gpu_milli``."""
    free_gpu = np.asarray(free_gpu_milli, dtype=np.float64)
    if cpu_per_gpu_milli <= 0:
        return np.zeros_like(free_gpu)
    fed = np.asarray(cpu_free_milli, dtype=np.float64) / cpu_per_gpu_milli
    return np.maximum(0.0, free_gpu - fed)


class FgdCpuScorer:
    name = "fgd-cpu"
    description = "FGD plus the growth of GPU capacity a node's free CPU can no longer feed."

    def __init__(
        self,
        workload: Workload | None = None,
        seed: int = 0,
        stranding_weight: float = DEFAULT_STRANDING_WEIGHT,
        cpu_per_gpu_milli: float | None = None,
    ) -> None:
        if stranding_weight < 0:
            raise ValueError(f"stranding_weight must be >= 0, got {stranding_weight}")
        if cpu_per_gpu_milli is not None and not cpu_per_gpu_milli > 0:
            raise ValueError(f"cpu_per_gpu_milli must be > 0, got {cpu_per_gpu_milli}")
        self.fgd = FgdScorer(workload, artifact_scores=False, seed=seed)
        """Exact fragmentation deltas (memoised per node state)."""
        self._gpu_pick = FgdScorer(self.fgd.workload, artifact_scores=True, seed=seed)
        """The artifact's GPU choice for a share, as ``fgd`` makes it."""
        self.stranding_weight = float(stranding_weight)
        self.cpu_per_gpu_milli = (
            float(cpu_per_gpu_milli)
            if cpu_per_gpu_milli is not None
            else cpu_milli_per_gpu_milli(self.fgd.workload)
        )
        """0 until the first score when neither the option nor the workload gives it."""
        self.tie_breaker = TieBreaker(seed)

    def _rho(self, compiled: CompiledCluster) -> float:
        if self.cpu_per_gpu_milli <= 0:
            gpus = compiled.gpu_usable.sum(axis=1)
            gpu_milli = float(gpus.sum()) * MILLI_PER_GPU
            cpu_milli = float(compiled.cpu_capacity_milli[gpus > 0].sum())
            self.cpu_per_gpu_milli = cpu_milli / gpu_milli if gpu_milli > 0 else 0.0
        return self.cpu_per_gpu_milli

    def delta_milli(
        self, compiled: CompiledCluster, request: MemberRequest, nodes: np.ndarray
    ) -> np.ndarray:
        """Fall of (fragmentation + weight x stranded) milli-GPU if ``request`` lands on each
        of ``nodes``; larger is better."""
        nodes = np.asarray(nodes, dtype=np.int64)
        delta = self.fgd.score(compiled, request, nodes) * MILLI_PER_GPU
        if request.gpu_milli_total == 0 or self.stranding_weight == 0:
            return delta
        usable = compiled.gpu_usable[nodes]
        used = compiled.gpu_used_milli[nodes].astype(np.int64)
        free_gpu = np.where(usable, MILLI_PER_GPU - used, 0).sum(axis=1)
        free_cpu = compiled.cpu_free_milli[nodes]
        rho = self._rho(compiled)
        before = stranded_milli(free_gpu, free_cpu, rho)
        after = stranded_milli(
            free_gpu - request.gpu_milli_total, free_cpu - request.cpu_milli, rho
        )
        return delta - self.stranding_weight * (after - before)

    def score(
        self, compiled: CompiledCluster, request: MemberRequest, nodes: np.ndarray
    ) -> np.ndarray:
        nodes = np.asarray(nodes, dtype=np.int64)
        points = artifact_points(self.delta_milli(compiled, request, nodes))
        return self.tie_breaker.integer_scores(compiled, nodes, points)

    def pick_gpu(self, compiled: CompiledCluster, request: MemberRequest, node: int) -> int | None:
        return self._gpu_pick.pick_gpu(compiled, request, node)
