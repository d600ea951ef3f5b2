"""Giving many running gangs back at once to a what-if copy of the free capacity (backfill).

Planning a reservation gives back, probe by probe, every running gang expected to end by
then: about 190 gangs' members per plan on a 39-node Philly cluster, each through
:meth:`CompiledCluster.release` (an array conversion and a kernel call, 3-4 us from Python),
thousands of plans per replay. One compiled loop over the members calls the same
:func:`topology.ledger_kernels.give` each of them would, in the same order, so the arrays end
exactly as the one-by-one releases leave them.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from phalanx.scheduler.placement import MemberPlacement
from phalanx.topology import ledger_kernels
from phalanx.topology.compiled import CompiledCluster

DONE = -1
"""What :func:`_give_spans` returns when every member was given back."""


@njit(cache=True)
def _give_spans(
    gpu_used_milli: np.ndarray,
    gpu_usable: np.ndarray,
    gpu_count: np.ndarray,
    cpu_free_milli: np.ndarray,
    memory_free_mib: np.ndarray,
    cpu_capacity_milli: np.ndarray,
    memory_capacity_mib: np.ndarray,
    node_domain: np.ndarray,
    free_gpu_mask: np.ndarray,
    free_gpu_count: np.ndarray,
    domain_free_gpus: np.ndarray,
    spans: np.ndarray,
    first: int,
    first_row: int,
    stop: int,
    member_node: np.ndarray,
    member_gpu_lo: np.ndarray,
    member_gpu_hi: np.ndarray,
    member_milli: np.ndarray,
    member_cpu: np.ndarray,
    member_memory: np.ndarray,
    gpu_flat: np.ndarray,
) -> int:
    for k in range(first, stop):
        for row in range(max(spans[k, 0], first_row) if k == first else spans[k, 0], spans[k, 1]):
            outcome = ledger_kernels.give(
                gpu_used_milli,
                gpu_usable,
                gpu_count,
                cpu_free_milli,
                memory_free_mib,
                cpu_capacity_milli,
                memory_capacity_mib,
                node_domain,
                free_gpu_mask,
                free_gpu_count,
                domain_free_gpus,
                member_node[row],
                gpu_flat[member_gpu_lo[row] : member_gpu_hi[row]],
                member_milli[row],
                member_cpu[row],
                member_memory[row],
            )
            if outcome != ledger_kernels.DONE:
                return k * (1 << 32) + row
    return DONE


class MemberTable:
    """The members of running gangs as flat arrays (node, GPUs, shares, cpu, memory), a row
    range per gang, kept across plans: a gang's placement does not change while it runs, and
    rebuilding the rows of some 330 gangs for each plan would cost what it saves."""

    def __init__(self) -> None:
        self._rows = 0
        self._gpus = 0
        self.node = np.zeros(64, dtype=np.int64)
        self.gpu_lo = np.zeros(64, dtype=np.int64)
        self.gpu_hi = np.zeros(64, dtype=np.int64)
        self.milli = np.zeros(64, dtype=np.int64)
        self.cpu = np.zeros(64, dtype=np.int64)
        self.memory = np.zeros(64, dtype=np.int64)
        self.gpu_flat = np.zeros(256, dtype=np.int64)

    def add(self, members: tuple[MemberPlacement, ...]) -> tuple[int, int]:
        """Rows for a placement's ``members``: (first, one past the last)."""
        first = self._rows
        for m in members:
            self._append(m.node_index, m.gpus, m.gpu_milli, m.cpu_milli, m.memory_mib)
        return first, self._rows

    def _append(self, node: int, gpus: tuple, milli: int, cpu: int, memory: int) -> None:
        row, lo = self._rows, self._gpus
        if row == len(self.node):
            for field in ("node", "gpu_lo", "gpu_hi", "milli", "cpu", "memory"):
                setattr(self, field, np.concatenate([getattr(self, field)] * 2))
        while lo + len(gpus) > len(self.gpu_flat):
            self.gpu_flat = np.concatenate([self.gpu_flat] * 2)
        self.gpu_flat[lo : lo + len(gpus)] = gpus
        self.node[row], self.gpu_lo[row], self.gpu_hi[row] = node, lo, lo + len(gpus)
        self.milli[row], self.cpu[row], self.memory[row] = milli, cpu, memory
        self._rows, self._gpus = row + 1, lo + len(gpus)

    def give_back(
        self, compiled: CompiledCluster, spans: np.ndarray, first: int, stop: int
    ) -> None:
        """Give gangs ``spans[first:stop]`` back to ``compiled``, in that order. A member the
        kernel refuses goes through :meth:`CompiledCluster.release`, as it would one by one
        (its reference check raises the ledger's own error)."""
        row = 0
        while first < stop:
            refused = _give_spans(
                compiled.gpu_used_milli,
                compiled.gpu_usable,
                compiled.gpu_count,
                compiled.cpu_free_milli,
                compiled.memory_free_mib,
                compiled.cpu_capacity_milli,
                compiled.memory_capacity_mib,
                compiled.node_domain,
                compiled.free_gpu_mask,
                compiled.free_gpu_count,
                compiled.domain_free_gpus,
                spans,
                first,
                row,
                stop,
                self.node,
                self.gpu_lo,
                self.gpu_hi,
                self.milli,
                self.cpu,
                self.memory,
                self.gpu_flat,
            )
            if refused == DONE:
                return
            first, row = divmod(refused, 1 << 32)
            # the reference release raises the ledger's error, or gives back what the kernel
            # would not (a figure beyond int64); then the loop goes on after that member
            compiled.release(
                int(self.node[row]),
                [int(g) for g in self.gpu_flat[self.gpu_lo[row] : self.gpu_hi[row]]],
                int(self.milli[row]),
                int(self.cpu[row]),
                int(self.memory[row]),
            )
            row += 1
