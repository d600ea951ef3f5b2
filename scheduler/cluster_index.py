"""Static facts about a compiled cluster that the placement engine reads on every call, built
once per cluster rather than per gang: the domain tree as child lists, node label and taint
masks, NVLink domains and the GPU-choice shapes of nodes.

The index is cached against the compiled cluster's static arrays, which what-if copies
(:meth:`topology.compiled.CompiledCluster.copy`) share, so every copy reuses it.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from phalanx.scheduler.cost import ideal_leftover_table
from phalanx.topology.compiled import NO_NVLINK_GROUP, NO_PRODUCT, CompiledCluster

CPU_ONLY = -1
"""``choice_shape`` of a node without GPUs."""


@dataclass(frozen=True)
class ChoiceShape:
    """What the GPU choice inside a node depends on: the pair-cost matrix and the NUMA layout
    (nodes with equal shapes get equal choices for equal free masks)."""

    pair_cost: np.ndarray  # float64 [gpus, gpus]
    numa: np.ndarray  # int16 [gpus]
    rail: np.ndarray  # int16 [gpus]
    ideal_leftover: np.ndarray  # float64 [gpus + 1], scheduler.cost.best_leftover_link by count
    worst_link: float
    """Worst finite link of the node: the scale of the leftover-link term."""
    socket_gpus: int
    """GPUs of the largest NUMA socket: members up to this size should not span sockets."""

    @property
    def gpu_count(self) -> int:
        return int(self.numa.shape[0])


@dataclass
class ClusterIndex:
    label_masks: dict[tuple[str, str], np.ndarray]
    """(label key, value) -> bool [nodes]."""
    taint_masks: dict[str, np.ndarray]
    """taint key -> bool [nodes]."""
    gpu_node: np.ndarray  # bool [nodes]
    child_start: np.ndarray  # int64 [domains + 1], CSR offsets into child_ids
    child_ids: np.ndarray  # int64, children of each domain one level down (nodes for level 1)
    rep_node: np.ndarray  # int64 [domains], one node of each domain
    domain_nodes: np.ndarray  # int64 [domains], how many nodes each domain holds
    nvlink_level: int
    """Largest multi-node NVLink level (an NVL72 clique), 0 when NVLink stays inside nodes."""
    nvlink_masks: np.ndarray  # uint64 [nodes, domains per node], usable GPUs per NVLink domain
    nvlink_node: np.ndarray  # bool [nodes], the node has NVLink between some GPUs
    max_nvlink_gpus: int
    """Usable GPUs of the largest NVLink domain (node-local or multi-node)."""
    choice_shape: np.ndarray  # int32 [nodes], CPU_ONLY for nodes without GPUs
    choice_shapes: list[ChoiceShape]
    largest_node: dict[int, tuple[int, int, int]]
    """GPU product id (``NO_PRODUCT`` for all nodes) -> the largest usable GPU count, cpu and
    memory capacity among nodes of that product, for spec validation."""
    static_masks: dict[tuple, np.ndarray] = field(default_factory=dict)
    """Eligibility masks by static request key (filled by :mod:`scheduler.eligibility`)."""
    choice_tables: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = field(
        default_factory=dict
    )
    """GPU-choice tables by (choice shape, GPU count) (filled by :mod:`scheduler.gpu_choice`)."""
    derived: dict[str, Any] = field(default_factory=dict)
    """Other static views of the cluster, each under its owner's key, built on first use (the
    topology scorer's room classes: :mod:`policies.scoring.domain_room`)."""
    choice_memo: dict[tuple, tuple[int, ...]] = field(default_factory=dict)

    def children(self, domain: int) -> np.ndarray:
        return self.child_ids[self.child_start[domain] : self.child_start[domain + 1]]


_INDEXES: dict[int, ClusterIndex] = {}


def cluster_index(compiled: CompiledCluster) -> ClusterIndex:
    """The index of ``compiled``'s cluster, built on first use."""
    key = id(compiled.node_domain)
    index = _INDEXES.get(key)
    if index is None:
        index = _build(compiled)
        _INDEXES[key] = index
        weakref.finalize(compiled.node_domain, _INDEXES.pop, key, None)
    return index


def _build(compiled: CompiledCluster) -> ClusterIndex:
    nodes = compiled.cluster.nodes
    n = compiled.n_nodes
    label_masks: dict[tuple[str, str], np.ndarray] = {}
    taint_masks: dict[str, np.ndarray] = {}
    for i, node in enumerate(nodes):
        for item in node.labels.items():
            label_masks.setdefault(item, np.zeros(n, dtype=bool))[i] = True
        for taint in node.taints:
            taint_masks.setdefault(taint, np.zeros(n, dtype=bool))[i] = True
    child_start, child_ids = _children(compiled)
    nvlink_masks, nvlink_node, node_max = _node_nvlink_domains(compiled)
    nvlink_levels = np.flatnonzero(compiled.level_is_nvlink)
    nvlink_level = int(nvlink_levels.max()) if nvlink_levels.size else 0
    max_nvlink = node_max
    if nvlink_level:
        lo, hi = compiled.level_domain_range[nvlink_level]
        max_nvlink = max(max_nvlink, int(compiled.domain_gpu_capacity[lo:hi].max()))
    shape_of, shapes = _choice_shapes(compiled)
    return ClusterIndex(
        label_masks=label_masks,
        taint_masks=taint_masks,
        gpu_node=compiled.node_product != NO_PRODUCT,
        child_start=child_start,
        child_ids=child_ids,
        rep_node=_rep_nodes(compiled),
        domain_nodes=np.bincount(
            compiled.node_domain.ravel(), minlength=len(compiled.domain_names)
        ).astype(np.int64),
        nvlink_level=nvlink_level,
        nvlink_masks=nvlink_masks,
        nvlink_node=nvlink_node,
        max_nvlink_gpus=max_nvlink,
        choice_shape=shape_of,
        choice_shapes=shapes,
        largest_node=_largest_nodes(compiled),
    )


def _largest_nodes(compiled: CompiledCluster) -> dict[int, tuple[int, int, int]]:
    usable = compiled.gpu_usable.sum(axis=1)
    out = {}
    for product in [NO_PRODUCT, *range(len(compiled.products))]:
        nodes = slice(None) if product == NO_PRODUCT else compiled.node_product == product
        out[product] = (
            int(usable[nodes].max()),
            int(compiled.cpu_capacity_milli[nodes].max()),
            int(compiled.memory_capacity_mib[nodes].max()),
        )
    return out


def _children(compiled: CompiledCluster) -> tuple[np.ndarray, np.ndarray]:
    """Each domain's child domains, as CSR (start offsets, child ids), children in id order."""
    n_domains = len(compiled.domain_names)
    pairs = []
    for level in range(1, compiled.n_levels):
        # one int64 per (parent, child): a 1-d unique is far cheaper than a row-wise one
        pairs.append(
            np.unique(compiled.node_domain[level] * n_domains + compiled.node_domain[level - 1])
        )
    key = np.concatenate(pairs) if pairs else np.zeros(0, dtype=np.int64)
    parent, child = np.divmod(key, n_domains)
    start = np.searchsorted(parent, np.arange(n_domains + 1)).astype(np.int64)
    return start, child.astype(np.int64)


def _rep_nodes(compiled: CompiledCluster) -> np.ndarray:
    rep = np.zeros(len(compiled.domain_names), dtype=np.int64)
    for level in range(compiled.n_levels):
        ids, first = np.unique(compiled.node_domain[level], return_index=True)
        rep[ids] = first
    return rep


def _node_nvlink_domains(compiled: CompiledCluster) -> tuple[np.ndarray, np.ndarray, int]:
    """Per node, the GPU bitmask of each NVLink group with a usable GPU (ascending, padded
    with 0); whether it has any; the most usable GPUs in one group."""
    group = compiled.gpu_nvlink_group
    usable = compiled.gpu_usable & (group != NO_NVLINK_GROUP)
    n_groups = int(group.max()) + 1 if group.size else 0
    if n_groups == 0 or not usable.any():
        return np.zeros((compiled.n_nodes, 1), dtype=np.uint64), np.zeros(compiled.n_nodes, bool), 0
    bits = np.left_shift(np.uint64(1), np.arange(group.shape[1], dtype=np.uint64))
    masks = np.zeros((compiled.n_nodes, n_groups), dtype=np.uint64)
    largest = 0
    for g in range(n_groups):
        members = (group == g) & usable
        masks[:, g] = members @ bits
        largest = max(largest, int(members.sum(axis=1).max()))
    present = masks != 0
    width = max(1, int(present.sum(axis=1).max()))
    # ascending non-empty masks first: empty ones sort last as the largest value, then read 0
    ordered = np.sort(np.where(present, masks, np.uint64(np.iinfo(np.uint64).max)), axis=1)
    ordered = np.where(ordered == np.iinfo(np.uint64).max, np.uint64(0), ordered)[:, :width]
    return ordered.astype(np.uint64), present.any(axis=1), largest


def _choice_shapes(compiled: CompiledCluster) -> tuple[np.ndarray, list[ChoiceShape]]:
    """Nodes grouped by what choosing GPUs on them reads (link costs, NUMA, rails), numbered
    in order of first appearance; CPU-only nodes are ``CPU_ONLY``."""
    ideal = ideal_leftover_table(compiled)
    shape_of = np.full(compiled.n_nodes, CPU_ONLY, dtype=np.int32)
    gpu_nodes = np.flatnonzero(compiled.gpu_count > 0)
    if gpu_nodes.size == 0:
        return shape_of, []
    rows = np.ascontiguousarray(
        np.concatenate(
            [
                compiled.node_shape[gpu_nodes, None].astype(np.int32),
                compiled.gpu_count[gpu_nodes, None].astype(np.int32),
                compiled.gpu_numa[gpu_nodes].astype(np.int32),
                compiled.gpu_rail[gpu_nodes].astype(np.int32),
            ],
            axis=1,
        )
    )
    # each row as one opaque value: a 1-d unique sorts them far faster than a row-wise one
    keys = rows.view(np.dtype((np.void, rows.shape[1] * rows.itemsize))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # numbered as first seen
    number = np.empty_like(order)
    number[order] = np.arange(order.size)
    shape_of[gpu_nodes] = number[inverse.ravel()]
    shapes: list[ChoiceShape] = []
    for u in order:
        i = int(gpu_nodes[first[u]])
        count = int(compiled.gpu_count[i])
        numa = compiled.gpu_numa[i, :count]
        pair = compiled.pair_cost_matrix(i)[:count, :count]
        finite = pair[np.isfinite(pair)]
        shapes.append(
            ChoiceShape(
                pair_cost=pair,
                numa=numa.copy(),
                rail=compiled.gpu_rail[i, :count].copy(),
                ideal_leftover=ideal[compiled.node_shape[i], : count + 1].copy(),
                worst_link=float(finite.max()) if finite.size else 0.0,
                socket_gpus=int(np.bincount(numa - numa.min()).max()),
            )
        )
    return shape_of, shapes
