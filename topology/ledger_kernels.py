"""Compiled updates of a compiled cluster's free capacity: take and give back one member's GPUs,
cpu and memory, and recompute the node's free-GPU mask, count and domain totals.

Every placement a replay starts and every job it finishes passes through these (twice per job
and member), and in Python each was a dozen small numpy operations (73-154 us a pair against a
few microseconds here). They check exactly what :meth:`CompiledCluster.allocate` and
:meth:`CompiledCluster.release` check, in the same order, and change nothing when a check
fails; they only say *that* it failed (``REFUSED``): the Python methods, kept as the reference
the tests compare these against, then run to raise the error with its message.
"""

from __future__ import annotations

import numpy as np
from numba import njit

MILLI_PER_GPU = 1000
"""Mirrors :data:`topology.model.MILLI_PER_GPU` (numba needs a module-level constant)."""
DONE = 0
REFUSED = 1


@njit(cache=True)
def refresh_node(
    gpu_used_milli: np.ndarray,
    gpu_usable: np.ndarray,
    node_domain: np.ndarray,
    free_gpu_mask: np.ndarray,
    free_gpu_count: np.ndarray,
    domain_free_gpus: np.ndarray,
    node: int,
) -> None:
    """Recompute the node's wholly-free GPU mask and count, and move the change in count
    through the node's domain of every level."""
    mask = np.uint64(0)
    count = 0
    for g in range(gpu_used_milli.shape[1]):
        if gpu_used_milli[node, g] == 0 and gpu_usable[node, g]:
            mask |= np.uint64(1) << np.uint64(g)
            count += 1
    delta = count - free_gpu_count[node]
    free_gpu_mask[node] = mask
    free_gpu_count[node] = count
    if delta:
        for level in range(node_domain.shape[0]):
            domain_free_gpus[node_domain[level, node]] += delta


@njit(cache=True)
def refresh_all(
    gpu_used_milli: np.ndarray,
    gpu_usable: np.ndarray,
    node_domain: np.ndarray,
    free_gpu_mask: np.ndarray,
    free_gpu_count: np.ndarray,
    domain_free_gpus: np.ndarray,
) -> None:
    """:func:`refresh_node` for every node in index order (building a cluster)."""
    for node in range(gpu_used_milli.shape[0]):
        refresh_node(
            gpu_used_milli,
            gpu_usable,
            node_domain,
            free_gpu_mask,
            free_gpu_count,
            domain_free_gpus,
            node,
        )


@njit(cache=True)
def _gpus_valid(gpu_count: np.ndarray, node: int, gpus: np.ndarray, gpu_milli: int) -> bool:
    """The GPU list checks of both updates: a share in 1..1000, no index twice, every index
    on the node (an empty list passes without looking at the share)."""
    if gpus.shape[0] == 0:
        return True
    if not 0 < gpu_milli <= MILLI_PER_GPU:
        return False
    for i in range(gpus.shape[0]):
        if gpus[i] < 0 or gpus[i] >= gpu_count[node]:
            return False
        for j in range(i):
            if gpus[j] == gpus[i]:
                return False
    return True


@njit(cache=True)
def take(
    gpu_used_milli: np.ndarray,
    gpu_usable: np.ndarray,
    gpu_count: np.ndarray,
    cpu_free_milli: np.ndarray,
    memory_free_mib: np.ndarray,
    node_domain: np.ndarray,
    free_gpu_mask: np.ndarray,
    free_gpu_count: np.ndarray,
    domain_free_gpus: np.ndarray,
    node: int,
    gpus: np.ndarray,
    gpu_milli: int,
    cpu_milli: int,
    memory_mib: int,
) -> int:
    """Take ``gpu_milli`` of each GPU in ``gpus`` plus cpu and memory on ``node``; DONE, or
    REFUSED with nothing changed."""
    if not 0 <= node < gpu_used_milli.shape[0]:
        return REFUSED
    if not _gpus_valid(gpu_count, node, gpus, gpu_milli):
        return REFUSED
    for i in range(gpus.shape[0]):
        if gpu_used_milli[node, gpus[i]] + gpu_milli > MILLI_PER_GPU:
            return REFUSED
    if cpu_milli > cpu_free_milli[node] or memory_mib > memory_free_mib[node]:
        return REFUSED
    for i in range(gpus.shape[0]):
        gpu_used_milli[node, gpus[i]] += gpu_milli
    cpu_free_milli[node] -= cpu_milli
    memory_free_mib[node] -= memory_mib
    refresh_node(
        gpu_used_milli,
        gpu_usable,
        node_domain,
        free_gpu_mask,
        free_gpu_count,
        domain_free_gpus,
        node,
    )
    return DONE


@njit(cache=True)
def give(
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
    node: int,
    gpus: np.ndarray,
    gpu_milli: int,
    cpu_milli: int,
    memory_mib: int,
) -> int:
    """Give back what :func:`take` took; DONE, or REFUSED (more than is held) with nothing
    changed."""
    if not 0 <= node < gpu_used_milli.shape[0]:
        return REFUSED
    if not _gpus_valid(gpu_count, node, gpus, gpu_milli):
        return REFUSED
    for i in range(gpus.shape[0]):
        if gpu_used_milli[node, gpus[i]] < gpu_milli or not gpu_usable[node, gpus[i]]:
            return REFUSED
    if (
        cpu_free_milli[node] + cpu_milli > cpu_capacity_milli[node]
        or memory_free_mib[node] + memory_mib > memory_capacity_mib[node]
    ):
        return REFUSED
    for i in range(gpus.shape[0]):
        gpu_used_milli[node, gpus[i]] -= gpu_milli
    cpu_free_milli[node] += cpu_milli
    memory_free_mib[node] += memory_mib
    refresh_node(
        gpu_used_milli,
        gpu_usable,
        node_domain,
        free_gpu_mask,
        free_gpu_count,
        domain_free_gpus,
        node,
    )
    return DONE
