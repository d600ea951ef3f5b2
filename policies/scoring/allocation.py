"""Bin packing and spreading by how allocated a node would be after the member lands
(kube-scheduler's ``NodeResourcesFit`` MostAllocated / LeastAllocated strategies)."""

from __future__ import annotations

import numpy as np
from phalanx.policies.scoring.common import BestFitGpuPick, worst_fit_gpu
from phalanx.scheduler.gang import MemberRequest
from phalanx.topology.compiled import CompiledCluster
from phalanx.topology.model import MILLI_PER_GPU

GPU_WEIGHT = 1.0
CPU_WEIGHT = 0.1
MEMORY_WEIGHT = 0.1
"""GPUs dominate the decision; cpu and memory only break ties between equally full nodes."""


def allocated_after(
    compiled: CompiledCluster, request: MemberRequest, nodes: np.ndarray
) -> np.ndarray:
    """Weighted mean, over the resources a node has, of the fraction allocated once
    ``request`` is placed there; 0..1."""
    gpu_cap = compiled.gpu_usable[nodes].sum(axis=1).astype(np.float64) * MILLI_PER_GPU
    gpu_used = np.where(compiled.gpu_usable[nodes], compiled.gpu_used_milli[nodes], 0).sum(axis=1)
    cpu_cap = compiled.cpu_capacity_milli[nodes].astype(np.float64)
    cpu_used = cpu_cap - compiled.cpu_free_milli[nodes]
    mem_cap = compiled.memory_capacity_mib[nodes].astype(np.float64)
    mem_used = mem_cap - compiled.memory_free_mib[nodes]
    total = np.zeros(len(nodes))
    weight = np.zeros(len(nodes))
    for cap, used, ask, w in (
        (gpu_cap, gpu_used, request.gpu_milli_total, GPU_WEIGHT),
        (cpu_cap, cpu_used, request.cpu_milli, CPU_WEIGHT),
        (mem_cap, mem_used, request.memory_mib, MEMORY_WEIGHT),
    ):
        has = cap > 0
        total[has] += w * (used[has] + ask) / cap[has]
        weight[has] += w
    return np.divide(total, weight, out=np.zeros_like(total), where=weight > 0)


class BinpackScorer(BestFitGpuPick):
    name = "binpack"
    description = "Most-allocated node first (keeps whole nodes free for large gangs)."

    def score(
        self, compiled: CompiledCluster, request: MemberRequest, nodes: np.ndarray
    ) -> np.ndarray:
        return allocated_after(compiled, request, nodes)


class SpreadScorer:
    name = "spread"
    description = "Least-allocated node first (spreads load and failure blast radius)."

    def score(
        self, compiled: CompiledCluster, request: MemberRequest, nodes: np.ndarray
    ) -> np.ndarray:
        return 1.0 - allocated_after(compiled, request, nodes)

    def pick_gpu(self, compiled: CompiledCluster, request: MemberRequest, node: int) -> int | None:
        return worst_fit_gpu(compiled, request, node)
