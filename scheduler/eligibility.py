"""Which nodes can take a member: the static filters (GPU model, node selector, taints) as a
boolean mask over nodes, and the member capacity of every node under the current free state.

Static masks are built from the per-cluster label and taint index and cached by request, so a
placement call costs a dictionary lookup plus one kernel pass over the free arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from phalanx.scheduler.cluster_index import ClusterIndex
from phalanx.scheduler.gang import MemberRequest
from phalanx.scheduler.kernels import fractional_member_capacity, whole_member_capacity
from phalanx.topology.compiled import CompiledCluster

UNBOUNDED_MEMBERS = 1 << 20
"""Capacity of a node for a member that asks for nothing it could run out of."""
STATIC_MASK_LIMIT = 4096
"""Cached masks (one per distinct model/selector/toleration set) kept before starting over."""


def static_key(request: MemberRequest) -> tuple:
    """The parts of a request that decide static eligibility, hashable."""
    products, selector, tolerations = (
        request.gpu_products,
        request.node_selector,
        request.tolerations,
    )
    return (  # most requests filter on nothing: no sorting then
        request.gpu_milli_total > 0,
        tuple(sorted(products)) if products else (),
        tuple(sorted(selector.items())) if selector else (),
        tuple(sorted(tolerations)) if tolerations else (),
    )


def request_key(request: MemberRequest) -> tuple:
    """A hashable identity of a request: members with equal keys are interchangeable."""
    return (
        request.gpus,
        request.gpu_milli,
        request.cpu_milli,
        request.memory_mib,
        *static_key(request)[1:],
    )


def static_mask(
    compiled: CompiledCluster, index: ClusterIndex, request: MemberRequest
) -> np.ndarray:
    """Nodes that pass the GPU-model, node-selector and taint filters (read-only array)."""
    key = static_key(request)
    mask = index.static_masks.get(key)
    if mask is None:
        mask = _filters(compiled, index, request)[-1][1]
        mask.flags.writeable = False
        if len(index.static_masks) >= STATIC_MASK_LIMIT:
            index.static_masks.clear()
        index.static_masks[key] = mask
    return mask


def _filters(
    compiled: CompiledCluster, index: ClusterIndex, request: MemberRequest
) -> list[tuple[str, np.ndarray]]:
    """The static filters in order, each with the mask of nodes passing it and all before."""
    n = compiled.n_nodes
    mask = index.gpu_node.copy() if request.gpu_milli_total > 0 else np.ones(n, dtype=bool)
    steps = [("gpu", mask.copy())]
    if request.gpu_products and request.gpu_milli_total > 0:
        ids = [compiled.products.index(p) for p in request.gpu_products if p in compiled.products]
        mask &= np.isin(compiled.node_product, ids)
        steps.append(("gpu_product", mask.copy()))
    if request.node_selector:
        for item in request.node_selector.items():
            mask &= index.label_masks.get(item, np.zeros(n, dtype=bool))
        steps.append(("node_selector", mask.copy()))
    tolerated = set(request.tolerations)
    for taint, tainted in index.taint_masks.items():
        if taint not in tolerated:
            mask &= ~tainted
    steps.append(("taints", mask))
    return steps


@dataclass(frozen=True)
class FreeArrays:
    """The mutable capacity arrays a capacity computation reads (the compiled cluster's own,
    or a scratch view with the gang's earlier members taken)."""

    gpu_used_milli: np.ndarray
    free_gpu_mask: np.ndarray
    free_gpu_count: np.ndarray
    cpu_free_milli: np.ndarray
    memory_free_mib: np.ndarray

    @classmethod
    def of(cls, compiled: CompiledCluster) -> FreeArrays:
        return cls(
            compiled.gpu_used_milli,
            compiled.free_gpu_mask,
            compiled.free_gpu_count,
            compiled.cpu_free_milli,
            compiled.memory_free_mib,
        )


def member_capacity(
    compiled: CompiledCluster, request: MemberRequest, eligible: np.ndarray, free: FreeArrays
) -> np.ndarray:
    """int64 [nodes]: how many members with ``request`` each node can take now."""
    if request.is_fractional:
        return fractional_member_capacity(
            eligible,
            free.gpu_used_milli,
            compiled.gpu_usable,
            free.cpu_free_milli,
            free.memory_free_mib,
            request.gpu_milli,
            request.cpu_milli,
            request.memory_mib,
        )
    return whole_member_capacity(
        eligible,
        free.free_gpu_count,
        free.cpu_free_milli,
        free.memory_free_mib,
        request.gpus,
        request.cpu_milli,
        request.memory_mib,
        UNBOUNDED_MEMBERS,
    )


def explain_no_node(
    compiled: CompiledCluster, index: ClusterIndex, request: MemberRequest
) -> tuple[str, str]:
    """(constraint, sentence) saying which static filter left no node for ``request``."""
    total = compiled.n_nodes
    counts = []
    for name, mask in _filters(compiled, index, request):
        passed = int(mask.sum())
        counts.append(f"{passed} {_FILTER_WORDS[name]}")
        if passed == 0:
            detail = _FILTER_DETAIL[name](request)
            return (
                name,
                f"no node passes the {name} filter{detail} (of {total} nodes: {', '.join(counts)})",
            )
    return "capacity", "every filter leaves some node"


_FILTER_WORDS = {
    "gpu": "have GPUs",
    "gpu_product": "have the GPU model",
    "node_selector": "also match the node selector",
    "taints": "also tolerate their taints",
}
_FILTER_DETAIL = {
    "gpu": lambda r: "",
    "gpu_product": lambda r: f" ({', '.join(r.gpu_products)})",
    "node_selector": lambda r: f" ({', '.join(f'{k}={v}' for k, v in r.node_selector.items())})",
    "taints": lambda r: f" (tolerates {list(r.tolerations) or 'nothing'})",
}
