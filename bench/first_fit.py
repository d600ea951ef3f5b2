"""The placement benchmarks' timing baseline: a minimal compiled first fit over the same arrays
the fast path reads, with no cost function, no topology and no GPU choice beyond "lowest free
indices".

One compiled pass computes every node's room for the gang's (uniform, whole-GPU) members, as
any placer's filter must, and gives members to nodes in index order. Ratios against it say how
far the fast path is from the least a placement over these arrays can cost on this machine,
whatever the machine's speed or load; :func:`reference_first_fit` is the numpy twin it is
tested against.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit
from phalanx.scheduler.gang import Gang
from phalanx.scheduler.kernels import floor_div
from phalanx.scheduler.state import ClusterState

NO_NODE = -1


@njit(cache=True)
def compiled_first_fit(
    eligible: np.ndarray,
    free_gpu_count: np.ndarray,
    free_gpu_mask: np.ndarray,
    cpu_free_milli: np.ndarray,
    memory_free_mib: np.ndarray,
    members: int,
    gpus: int,
    cpu_milli: int,
    memory_mib: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(node, GPU mask) of each member, ``NO_NODE`` and 0 for members that found no room:
    every node's room (whole GPUs, cpu, memory) in one pass, members given out in node
    order, each taking the node's lowest free GPUs."""
    node_of = np.full(members, NO_NODE, dtype=np.int64)
    mask_of = np.zeros(members, dtype=np.uint64)
    placed = 0
    for i in range(eligible.shape[0]):
        if not eligible[i]:
            continue
        room = members
        if gpus > 0:
            room = min(room, floor_div(free_gpu_count[i], gpus))
        if cpu_milli > 0:
            room = min(room, floor_div(cpu_free_milli[i], cpu_milli))
        if memory_mib > 0:
            room = min(room, floor_div(memory_free_mib[i], memory_mib))
        free = free_gpu_mask[i]
        while room > 0 and placed < members:
            taken = np.uint64(0)
            for _ in range(gpus):
                low = free & (~free + np.uint64(1))
                taken |= low
                free ^= low
            node_of[placed] = i
            mask_of[placed] = taken
            placed += 1
            room -= 1
    return node_of, mask_of


def reference_first_fit(
    eligible: np.ndarray,
    free_gpu_count: np.ndarray,
    free_gpu_mask: np.ndarray,
    cpu_free_milli: np.ndarray,
    memory_free_mib: np.ndarray,
    members: int,
    gpus: int,
    cpu_milli: int,
    memory_mib: int,
) -> tuple[np.ndarray, np.ndarray]:
    """numpy twin of :func:`compiled_first_fit`."""
    room = np.full(eligible.shape, members, dtype=np.int64)
    if gpus > 0:
        room = np.minimum(room, free_gpu_count // gpus)
    if cpu_milli > 0:
        room = np.minimum(room, cpu_free_milli // cpu_milli)
    if memory_mib > 0:
        room = np.minimum(room, memory_free_mib // memory_mib)
    room = np.where(eligible, room, 0)
    nodes = np.repeat(np.arange(eligible.size), room)[:members]
    node_of = np.full(members, NO_NODE, dtype=np.int64)
    node_of[: nodes.size] = nodes
    mask_of = np.zeros(members, dtype=np.uint64)
    for j, node in enumerate(nodes.tolist()):
        rank = j - int(np.searchsorted(nodes, node))  # members before this one on the node
        free = [g for g in range(64) if int(free_gpu_mask[node]) >> g & 1]
        mine = free[rank * gpus : (rank + 1) * gpus]
        mask_of[j] = sum(1 << g for g in mine)
    return node_of, mask_of


def first_fit_call(state: ClusterState, gang: Gang) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    """The baseline for ``gang`` (uniform whole-GPU members) on ``state``, as a call without
    arguments for timing loops."""
    c = state.compiled
    request = gang.members[0].request
    eligible = c.gpu_count > 0
    members = len(gang.members)

    def run() -> tuple[np.ndarray, np.ndarray]:
        return compiled_first_fit(
            eligible,
            c.free_gpu_count,
            c.free_gpu_mask,
            c.cpu_free_milli,
            c.memory_free_mib,
            members,
            request.gpus,
            request.cpu_milli,
            request.memory_mib,
        )

    return run
