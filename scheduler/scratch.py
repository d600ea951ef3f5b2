"""Free capacity as a gang's own earlier members leave it, while the search fills a candidate."""

from __future__ import annotations

import numpy as np
from phalanx.scheduler.eligibility import FreeArrays
from phalanx.scheduler.gang import MemberRequest
from phalanx.topology.compiled import CompiledCluster


class Scratch:
    """Free capacity as the gang's own earlier members leave it, layered over the untouched
    compiled arrays (the search never writes to the cluster state)."""

    def __init__(self, compiled: CompiledCluster) -> None:
        self.compiled = compiled
        self.used: dict[int, np.ndarray] = {}
        self.cpu: dict[int, int] = {}
        self.memory: dict[int, int] = {}
        self.gang_gpus: dict[int, set[int]] = {}
        """GPUs the gang's earlier members took, by node."""

    def used_row(self, node: int) -> np.ndarray:
        row = self.used.get(node)
        return self.compiled.gpu_used_milli[node] if row is None else row

    def free_mask(self, node: int) -> int:
        row = self.used.get(node)
        if row is None:
            return int(self.compiled.free_gpu_mask[node])
        free = np.flatnonzero((row == 0) & self.compiled.gpu_usable[node])
        return sum(1 << int(g) for g in free)

    def take(
        self, node: int, gpus: tuple[int, ...], gpu_milli: int, request: MemberRequest
    ) -> None:
        row = self.used.get(node)
        if row is None:
            row = self.used[node] = self.compiled.gpu_used_milli[node].copy()
        for g in gpus:
            row[g] += gpu_milli
        self.gang_gpus.setdefault(node, set()).update(gpus)
        c = self.compiled
        self.cpu[node] = self.cpu.get(node, int(c.cpu_free_milli[node])) - request.cpu_milli
        self.memory[node] = self.memory.get(node, int(c.memory_free_mib[node])) - request.memory_mib

    def arrays(self) -> FreeArrays:
        c = self.compiled
        if not (self.used or self.cpu):
            return FreeArrays.of(c)
        used = c.gpu_used_milli.copy()
        mask = c.free_gpu_mask.copy()
        count = c.free_gpu_count.copy()
        cpu = c.cpu_free_milli.copy()
        memory = c.memory_free_mib.copy()
        for node, row in self.used.items():
            used[node] = row
            node_mask = self.free_mask(node)
            mask[node] = np.uint64(node_mask)
            count[node] = node_mask.bit_count()
        for node, value in self.cpu.items():
            cpu[node] = value
        for node, value in self.memory.items():
            memory[node] = value
        return FreeArrays(used, mask, count, cpu, memory)
