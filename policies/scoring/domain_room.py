"""How much of a node's fabric domains is still whole free nodes: the topology scorer's
"domain room" term, one compiled pass.

A multi-node gang can start inside a domain only on its whole free nodes, so a single-node job
should break a free node where few others remain. The term is read for every candidate node of
every scored placement (the extender's default scorer), and the numpy version made about ten
passes over every node per call, 0.25-0.5 ms on 10,000 nodes; the kernel counts the whole free
nodes per domain in one pass a level and sums each candidate's levels in another, with the same
arithmetic in the same order (tested equal to :func:`domain_room_share_reference`).
"""

from __future__ import annotations

import numpy as np
from numba import njit
from phalanx.scheduler.cluster_index import cluster_index
from phalanx.topology.compiled import CompiledCluster


def domain_room_share(compiled: CompiledCluster, nodes: np.ndarray) -> np.ndarray:
    """For each of ``nodes``, summed over the fabric levels above the node that have more than
    one domain: the share of the node's domain that is whole free nodes other than itself
    (what a multi-node gang could still start on inside that domain)."""
    return _domain_room(*_room_inputs(compiled, nodes))


def _room_inputs(compiled: CompiledCluster, nodes: np.ndarray) -> tuple[np.ndarray, ...]:
    """The arrays :func:`_domain_room` reads, in its argument order."""
    return (
        compiled.free_gpu_count,
        compiled.gpu_count,
        compiled.node_domain,
        _split_levels(compiled),
        cluster_index(compiled).domain_nodes,
        np.asarray(nodes, dtype=np.int64),
    )


def packed_room_scores(
    compiled: CompiledCluster,
    nodes: np.ndarray,
    gpus: int,
    packing_weight: float,
    room_weight: float,
) -> np.ndarray:
    """The topology scorer's first two terms for each of ``nodes`` in one compiled call:
    ``-packing_weight * (free GPUs left after taking gpus) / GPUs - room_weight * domain room
    share`` (:func:`domain_room_share`), with numpy's arithmetic in numpy's order, so equal to
    computing them apart to the bit (tested); the numpy glue cost as much as the share."""
    return _packed_room_scores(*_room_inputs(compiled, nodes), gpus, packing_weight, room_weight)


def _split_levels(compiled: CompiledCluster) -> np.ndarray:
    """Fabric levels above the node with more than one domain."""
    ranges = compiled.level_domain_range
    return np.array(
        [lv for lv in range(1, compiled.n_levels) if ranges[lv, 1] - ranges[lv, 0] >= 2],
        dtype=np.int64,
    )


@njit(cache=True)
def _domain_room(
    free_gpu_count: np.ndarray,
    gpu_count: np.ndarray,
    node_domain: np.ndarray,
    levels: np.ndarray,
    domain_nodes: np.ndarray,
    nodes: np.ndarray,
) -> np.ndarray:
    # level-major: each pass reads one contiguous row of node_domain
    n = free_gpu_count.size
    whole = np.empty(n, dtype=np.bool_)
    for i in range(n):
        whole[i] = gpu_count[i] > 0 and free_gpu_count[i] == gpu_count[i]
    whole_in = np.zeros(domain_nodes.size, dtype=np.int64)
    for j in range(levels.size):
        row = node_domain[levels[j]]
        for i in range(n):
            if whole[i]:
                whole_in[row[i]] += 1
    share = np.zeros(nodes.size)
    for j in range(levels.size):
        row = node_domain[levels[j]]
        for k in range(nodes.size):
            i = nodes[k]
            d = row[i]
            share[k] += (whole_in[d] - (1 if whole[i] else 0)) / domain_nodes[d]
    return share


@njit(cache=True)
def _packed_room_scores(
    free_gpu_count: np.ndarray,
    gpu_count: np.ndarray,
    node_domain: np.ndarray,
    levels: np.ndarray,
    domain_nodes: np.ndarray,
    nodes: np.ndarray,
    gpus: int,
    packing_weight: float,
    room_weight: float,
) -> np.ndarray:
    share = _domain_room(free_gpu_count, gpu_count, node_domain, levels, domain_nodes, nodes)
    out = np.empty(nodes.size)
    for k in range(nodes.size):
        i = nodes[k]
        left_free = (free_gpu_count[i] - gpus) / max(gpu_count[i], 1)
        out[k] = -packing_weight * left_free - room_weight * share[k]
    return out


def domain_room_share_reference(compiled: CompiledCluster, nodes: np.ndarray) -> np.ndarray:
    """numpy reference of :func:`domain_room_share`."""
    share = np.zeros(len(nodes))
    whole = (compiled.free_gpu_count == compiled.gpu_count) & (compiled.gpu_count > 0)
    for level in range(1, compiled.n_levels):
        lo, hi = (int(x) for x in compiled.level_domain_range[level])
        if hi - lo < 2:
            continue
        row = compiled.node_domain[level] - lo
        size = np.bincount(row, minlength=hi - lo)
        free = np.bincount(row, weights=whole, minlength=hi - lo)
        mine = row[nodes]
        share += (free[mine] - whole[nodes]) / size[mine]
    return share
