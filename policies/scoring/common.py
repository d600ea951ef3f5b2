"""Array helpers every scorer shares: free capacity per GPU, and the classic GPU picks for a
fractional share (best fit packs shares onto busy GPUs, worst fit spreads them)."""

from __future__ import annotations

import numpy as np
from phalanx.scheduler.gang import MemberRequest
from phalanx.topology.compiled import CompiledCluster
from phalanx.topology.model import MILLI_PER_GPU


def free_milli(compiled: CompiledCluster, nodes: np.ndarray) -> np.ndarray:
    """``[len(nodes), max_gpus]`` int64 free milli-GPU; 0 for missing, broken or MIG GPUs
    (the compiled arrays count those as fully used)."""
    return MILLI_PER_GPU - compiled.gpu_used_milli[nodes].astype(np.int64)


def fitting_gpus(compiled: CompiledCluster, request: MemberRequest, node: int) -> np.ndarray:
    """Indices of the GPUs of ``node`` that can take the fractional ``request``."""
    free = free_milli(compiled, np.array([node]))[0]
    return np.flatnonzero(free >= request.gpu_milli)


def best_fit_gpu(compiled: CompiledCluster, request: MemberRequest, node: int) -> int | None:
    """The fitting GPU with the least free capacity (lowest index on ties)."""
    if not request.is_fractional:
        return None
    fits = fitting_gpus(compiled, request, node)
    if fits.size == 0:
        return None
    free = MILLI_PER_GPU - compiled.gpu_used_milli[node, fits]
    return int(fits[np.argmin(free)])


def worst_fit_gpu(compiled: CompiledCluster, request: MemberRequest, node: int) -> int | None:
    """The fitting GPU with the most free capacity (lowest index on ties)."""
    if not request.is_fractional:
        return None
    fits = fitting_gpus(compiled, request, node)
    if fits.size == 0:
        return None
    free = MILLI_PER_GPU - compiled.gpu_used_milli[node, fits]
    return int(fits[np.argmax(free)])


class BestFitGpuPick:
    """Mixin: shares go to the busiest GPU that fits."""

    def pick_gpu(self, compiled: CompiledCluster, request: MemberRequest, node: int) -> int | None:
        return best_fit_gpu(compiled, request, node)
