"""Keep the planner off nodes kube-scheduler did not offer.

kube-scheduler sends the extender only the nodes that passed its own filters (taints, affinity,
resource fit, cordons, NotReady). While planning a gang, the capacity of every other node is
taken away for the duration of the plan and given back afterwards, so the placement engine sees
exactly the offered nodes without a copy of the whole cluster state.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from topology.compiled import CompiledCluster
from topology.model import MILLI_PER_GPU


@contextmanager
def withheld(compiled: CompiledCluster, nodes: np.ndarray) -> Iterator[None]:
    """Within the block, ``nodes`` (indices) have no free GPU, cpu or memory.

    Allocations made on other nodes inside the block are kept: only the withheld rows and
    their share of the per-domain free counts are put back.
    """
    nodes = np.asarray(nodes, dtype=np.int64)
    if nodes.size == 0:
        yield
        return
    saved_used = compiled.gpu_used_milli[nodes].copy()
    saved_cpu = compiled.cpu_free_milli[nodes].copy()
    saved_mem = compiled.memory_free_mib[nodes].copy()
    saved_mask = compiled.free_gpu_mask[nodes].copy()
    saved_count = compiled.free_gpu_count[nodes].copy()
    domains = compiled.node_domain[:, nodes].ravel()
    counts = np.tile(saved_count.astype(np.int64), compiled.n_levels)
    compiled.gpu_used_milli[nodes] = MILLI_PER_GPU
    compiled.cpu_free_milli[nodes] = 0
    compiled.memory_free_mib[nodes] = 0
    compiled.free_gpu_mask[nodes] = 0
    compiled.free_gpu_count[nodes] = 0
    np.subtract.at(compiled.domain_free_gpus, domains, counts)
    try:
        yield
    finally:
        compiled.gpu_used_milli[nodes] = saved_used
        compiled.cpu_free_milli[nodes] = saved_cpu
        compiled.memory_free_mib[nodes] = saved_mem
        compiled.free_gpu_mask[nodes] = saved_mask
        compiled.free_gpu_count[nodes] = saved_count
        np.add.at(compiled.domain_free_gpus, domains, counts)


RECENT_OFFER_LISTS = 4
"""Offered lists remembered: the filter's and prioritize's lists for the same pod differ."""


class OfferedIndex:
    """Node names -> indices, remembering recent lists: kube-scheduler offers the same
    feasible set to consecutive pods, and comparing two lists is cheaper than mapping one
    (lists of different lengths differ at once)."""

    def __init__(self, compiled: CompiledCluster) -> None:
        self.compiled = compiled
        self._recent: list[tuple[list[str], tuple[np.ndarray, list[str]]]] = []

    def __call__(self, names: list[str]) -> tuple[np.ndarray, list[str]]:
        """Indices of the offered nodes Phalanx knows, and the names it does not know."""
        for i, (seen, result) in enumerate(self._recent):
            if seen == names:
                if i:
                    self._recent.insert(0, self._recent.pop(i))
                return result
        result = offered_indices(self.compiled, names)
        self._recent.insert(0, (list(names), result))
        del self._recent[RECENT_OFFER_LISTS:]
        return result


def offered_indices(compiled: CompiledCluster, names: list[str]) -> tuple[np.ndarray, list[str]]:
    """Indices of the offered nodes Phalanx knows, and the names it does not know."""
    found = list(map(compiled.node_index.get, names))
    if None not in found:
        return np.fromiter(found, dtype=np.int64, count=len(found)), []
    known = np.fromiter((i for i in found if i is not None), dtype=np.int64)
    return known, [n for n, i in zip(names, found, strict=True) if i is None]


def not_offered(compiled: CompiledCluster, offered: np.ndarray) -> np.ndarray:
    """Nodes outside ``offered`` that still have something free (the only ones worth
    withholding)."""
    mask = np.ones(compiled.n_nodes, dtype=bool)
    mask[offered] = False
    mask &= (compiled.free_gpu_count > 0) | (compiled.cpu_free_milli > 0)
    return np.flatnonzero(mask)
