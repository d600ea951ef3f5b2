"""The cluster compiled to numpy arrays: what the placement hot path reads and updates.

Static arrays describe the hardware; the mutable ones (``gpu_used_milli``, ``free_gpu_mask``,
``free_gpu_count``, ``cpu_free_milli``, ``memory_free_mib``, ``domain_free_gpus``) are updated
in place by :meth:`CompiledCluster.allocate` and :meth:`CompiledCluster.release` (compiled, in
:mod:`topology.ledger_kernels`), so no decision ever rebuilds them.

Domains of all levels share one flat index space: ``node_domain[level, node]`` is a row of
``domain_free_gpus``, so moving one node's free count through every level is a single
fancy-indexed add. Level 0's domains are the nodes themselves, in node order
(``node_domain[0, i] == i``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from phalanx.topology import ledger_kernels
from phalanx.topology.model import MAX_GPUS_PER_NODE, MILLI_PER_GPU, Cluster, Node

NO_PRODUCT = -1
NO_RAIL = -1
NO_NVLINK_GROUP = -1
"""``gpu_nvlink_group`` of a GPU in no NVLink group (and of absent GPUs)."""
CHANGE_LOG_MIN = 4096
"""Entries :attr:`CompiledCluster.changed_nodes` holds before starting over (or one per node on
larger clusters): past that, a reader regroups from the arrays."""


class CapacityError(ValueError):
    """An allocate or release that would break a capacity invariant; nothing was changed."""


@dataclass
class CompiledCluster:
    """Array form of a :class:`~topology.model.Cluster` plus its free capacity."""

    cluster: Cluster
    node_names: list[str]
    node_index: dict[str, int]
    level_names: list[str]
    level_cost: np.ndarray  # float64 [levels]; level 0 (node) is NaN: use the pair matrices
    level_is_nvlink: np.ndarray  # bool [levels]
    node_domain: np.ndarray  # int64 [levels, nodes], flat domain ids
    domain_level: np.ndarray  # int64 [domains]
    domain_names: list[str]  # flat, "level:path"
    level_domain_range: np.ndarray  # int64 [levels, 2] (first, end) in the flat domain space
    products: list[str]
    node_product: np.ndarray  # int16 [nodes], NO_PRODUCT for CPU-only nodes
    gpu_count: np.ndarray  # int32 [nodes]
    gpu_memory_mib: np.ndarray  # int64 [nodes]
    node_egress_cost: np.ndarray  # float64 [nodes]
    node_shape: np.ndarray  # int32 [nodes]
    shape_pair_cost: np.ndarray  # float64 [shapes, max_gpus, max_gpus]
    gpu_rail: np.ndarray  # int16 [nodes, max_gpus]
    gpu_numa: np.ndarray  # int16 [nodes, max_gpus]
    gpu_nvlink_group: np.ndarray  # int16 [nodes, max_gpus], NO_NVLINK_GROUP outside any
    gpu_usable: np.ndarray  # bool [nodes, max_gpus]: exists, healthy, not MIG
    cpu_capacity_milli: np.ndarray  # int64 [nodes]
    memory_capacity_mib: np.ndarray  # int64 [nodes]
    domain_gpu_capacity: np.ndarray  # int64 [domains], usable GPUs
    # -- mutable state ------------------------------------------------------------------
    gpu_used_milli: np.ndarray  # int32 [nodes, max_gpus]
    free_gpu_mask: np.ndarray  # uint64 [nodes], bit g set when GPU g is wholly free
    free_gpu_count: np.ndarray  # int32 [nodes]
    cpu_free_milli: np.ndarray  # int64 [nodes]
    memory_free_mib: np.ndarray  # int64 [nodes]
    domain_free_gpus: np.ndarray  # int64 [domains], wholly free GPUs
    changed_nodes: list[int] = field(default_factory=list, repr=False, compare=False)
    """Nodes whose free state changed, in order (repeats allowed): a reader of derived state
    (``scheduler.free_state_buckets``) catches up from where it last read. Replaced by a new
    list when it grows past its bound, which tells readers to start over."""

    # ------------------------------------------------------------------ building
    @classmethod
    def build(cls, cluster: Cluster) -> CompiledCluster:
        nodes = cluster.nodes
        n_nodes = len(nodes)
        if n_nodes == 0:
            raise ValueError(f"cluster {cluster.name!r} has no nodes")
        names = [n.name for n in nodes]
        index = {name: i for i, name in enumerate(names)}
        if len(index) != n_nodes:
            dup = sorted({x for x in names if names.count(x) > 1})
            raise ValueError(f"duplicate node names in cluster {cluster.name!r}: {dup[:5]}")
        max_gpus = max(1, max(n.gpu_count for n in nodes))
        if max_gpus > MAX_GPUS_PER_NODE:
            raise ValueError(f"a node has {max_gpus} GPUs; at most {MAX_GPUS_PER_NODE} supported")

        level_names = cluster.level_names
        n_levels = len(level_names)
        node_domain = np.zeros((n_levels, n_nodes), dtype=np.int64)
        node_domain[0] = np.arange(n_nodes)
        domain_names = [f"node:{name}" for name in names]
        ranges = [(0, n_nodes)]
        for li, level in enumerate(cluster.levels, start=1):
            upper = [lvl.name for lvl in cluster.levels[li - 1 :]]
            ids: dict[tuple[str, ...], int] = {}
            for ni, node in enumerate(nodes):
                path = tuple(_domain_of(node, lvl) for lvl in reversed(upper))
                if path not in ids:
                    ids[path] = len(domain_names)
                    domain_names.append(f"{level.name}:{'/'.join(path)}")
                node_domain[li, ni] = ids[path]
            ranges.append((ranges[-1][1], len(domain_names)))
        domain_level = np.zeros(len(domain_names), dtype=np.int64)
        for li, (lo, hi) in enumerate(ranges):
            domain_level[lo:hi] = li

        products = sorted({n.product for n in nodes if n.gpus})
        product_id = {p: i for i, p in enumerate(products)}
        shapes: dict[bytes, int] = {}
        shape_mats: list[np.ndarray] = []
        by_signature: dict[tuple[object, ...], tuple[int, float]] = {}
        node_shape = np.zeros(n_nodes, dtype=np.int32)
        egress = np.zeros(n_nodes, dtype=np.float64)
        gpu_rail = np.full((n_nodes, max_gpus), NO_RAIL, dtype=np.int16)
        gpu_numa = np.zeros((n_nodes, max_gpus), dtype=np.int16)
        gpu_nvlink = np.full((n_nodes, max_gpus), NO_NVLINK_GROUP, dtype=np.int16)
        usable = np.zeros((n_nodes, max_gpus), dtype=bool)
        for ni, node in enumerate(nodes):
            signature = node.link_signature()
            if signature not in by_signature:
                mat = np.full((max_gpus, max_gpus), np.inf)
                mat[: node.gpu_count, : node.gpu_count] = node.pair_cost()
                key = mat.tobytes()
                if key not in shapes:
                    shapes[key] = len(shape_mats)
                    shape_mats.append(mat)
                by_signature[signature] = (shapes[key], node.egress_cost() if node.gpus else 0.0)
            node_shape[ni], egress[ni] = by_signature[signature]
            for g, gpu in enumerate(node.gpus):
                if gpu.index != g:
                    raise ValueError(
                        f"node {node.name!r}: GPU at position {g} has index {gpu.index}"
                    )
                gpu_rail[ni, g] = gpu.rail
                gpu_numa[ni, g] = gpu.numa_node
                gpu_nvlink[ni, g] = max(gpu.nvlink_group, NO_NVLINK_GROUP)
                usable[ni, g] = gpu.healthy and not gpu.mig_enabled

        level_cost = np.array([np.nan, *(lvl.cost for lvl in cluster.levels)], dtype=np.float64)
        level_is_nvlink = np.array([False, *(lvl.nvlink for lvl in cluster.levels)], dtype=bool)
        gpu_count = np.array([n.gpu_count for n in nodes], dtype=np.int32)
        used = np.where(usable, 0, MILLI_PER_GPU).astype(np.int32)
        cpu = np.array([n.cpu_milli for n in nodes], dtype=np.int64)
        mem = np.array([n.memory_mib for n in nodes], dtype=np.int64)
        domain_capacity = np.zeros(len(domain_names), dtype=np.int64)
        np.add.at(domain_capacity, node_domain.ravel(), np.tile(usable.sum(axis=1), n_levels))
        compiled = cls(
            cluster=cluster,
            node_names=names,
            node_index=index,
            level_names=level_names,
            level_cost=level_cost,
            level_is_nvlink=level_is_nvlink,
            node_domain=node_domain,
            domain_level=domain_level,
            domain_names=domain_names,
            level_domain_range=np.array(ranges, dtype=np.int64),
            products=products,
            node_product=np.array(
                [product_id[n.product] if n.gpus else NO_PRODUCT for n in nodes], dtype=np.int16
            ),
            gpu_count=gpu_count,
            gpu_memory_mib=np.array(
                [n.gpus[0].memory_mib if n.gpus else 0 for n in nodes], dtype=np.int64
            ),
            node_egress_cost=egress,
            node_shape=node_shape,
            shape_pair_cost=np.stack(shape_mats),
            gpu_rail=gpu_rail,
            gpu_numa=gpu_numa,
            gpu_nvlink_group=gpu_nvlink,
            gpu_usable=usable,
            cpu_capacity_milli=cpu,
            memory_capacity_mib=mem,
            domain_gpu_capacity=domain_capacity,
            gpu_used_milli=used,
            free_gpu_mask=np.zeros(n_nodes, dtype=np.uint64),
            free_gpu_count=np.zeros(n_nodes, dtype=np.int32),
            cpu_free_milli=cpu.copy(),
            memory_free_mib=mem.copy(),
            domain_free_gpus=np.zeros_like(domain_capacity),
        )
        ledger_kernels.refresh_all(
            compiled.gpu_used_milli,
            compiled.gpu_usable,
            compiled.node_domain,
            compiled.free_gpu_mask,
            compiled.free_gpu_count,
            compiled.domain_free_gpus,
        )
        return compiled

    # ------------------------------------------------------------------ queries
    @property
    def n_nodes(self) -> int:
        return len(self.node_names)

    @property
    def n_levels(self) -> int:
        return len(self.level_names)

    @property
    def max_gpus(self) -> int:
        return int(self.gpu_used_milli.shape[1])

    def level_index(self, name: str) -> int:
        try:
            return self.level_names.index(name)
        except ValueError:
            raise KeyError(
                f"unknown topology level {name!r}; this cluster has {self.level_names}"
            ) from None

    def pair_cost_matrix(self, node: int) -> np.ndarray:
        """The node's GPU pair-cost matrix, padded to ``max_gpus`` with ``inf``."""
        return self.shape_pair_cost[self.node_shape[node]]

    def lowest_common_level(self, node_a: int, node_b: int) -> int:
        same = self.node_domain[:, node_a] == self.node_domain[:, node_b]
        return int(np.argmax(same))

    def inter_node_cost(self, node_a: int, node_b: int) -> float:
        """Cost between a GPU of ``node_a`` and one of ``node_b`` (different nodes)."""
        level = self.lowest_common_level(node_a, node_b)
        if level == 0:
            raise ValueError("inter_node_cost takes two different nodes")
        if self.level_is_nvlink[level]:
            return float(self.level_cost[level])
        egress = max(self.node_egress_cost[node_a], self.node_egress_cost[node_b])
        return float(max(self.level_cost[level], egress))

    def pair_cost(self, node_a: int, gpu_a: int, node_b: int, gpu_b: int) -> float:
        if node_a == node_b:
            return float(self.pair_cost_matrix(node_a)[gpu_a, gpu_b])
        return self.inter_node_cost(node_a, node_b)

    def free_gpus(self, node: int) -> list[int]:
        mask = int(self.free_gpu_mask[node])
        return [g for g in range(self.max_gpus) if mask >> g & 1]

    def gpu_allocation_ratio(self) -> float:
        """Allocated share of usable GPU capacity, fractional shares counted in milli."""
        usable = self.gpu_usable
        capacity = usable.sum() * MILLI_PER_GPU
        return float(self.gpu_used_milli[usable].sum() / capacity) if capacity else 0.0

    def mutable_state_bytes(self) -> bytes:
        """Every mutable array, for checking that a failed operation changed nothing."""
        return b"".join(getattr(self, name).tobytes() for name in self.MUTABLE_FIELDS)

    MUTABLE_FIELDS: ClassVar[tuple[str, ...]] = (
        "gpu_used_milli",
        "free_gpu_mask",
        "free_gpu_count",
        "cpu_free_milli",
        "memory_free_mib",
        "domain_free_gpus",
    )

    def copy(self) -> CompiledCluster:
        """A what-if copy: static arrays shared, mutable ones copied."""
        clone = copy.copy(self)
        for name in self.MUTABLE_FIELDS:
            setattr(clone, name, getattr(self, name).copy())
        clone.changed_nodes = []
        return clone

    def emptied(self) -> CompiledCluster:
        """A copy with nothing allocated (static arrays shared): where a gang would go on
        this cluster if nothing else ran, whatever the live ledger holds now."""
        clone = self.copy()
        clone.gpu_used_milli[...] = np.where(self.gpu_usable, 0, MILLI_PER_GPU)
        clone.cpu_free_milli[...] = self.cpu_capacity_milli
        clone.memory_free_mib[...] = self.memory_capacity_mib
        ledger_kernels.refresh_all(
            clone.gpu_used_milli,
            clone.gpu_usable,
            clone.node_domain,
            clone.free_gpu_mask,
            clone.free_gpu_count,
            clone.domain_free_gpus,
        )
        return clone

    # ------------------------------------------------------------------ updates
    def allocate(
        self,
        node: int,
        gpus: Sequence[int],
        gpu_milli: int,
        cpu_milli: int = 0,
        memory_mib: int = 0,
    ) -> None:
        """Take ``gpu_milli`` (1000 = whole) of each GPU in ``gpus`` plus cpu and memory on
        ``node``. Checks everything first and changes nothing if any check fails."""
        try:
            outcome = ledger_kernels.take(
                self.gpu_used_milli,
                self.gpu_usable,
                self.gpu_count,
                self.cpu_free_milli,
                self.memory_free_mib,
                self.node_domain,
                self.free_gpu_mask,
                self.free_gpu_count,
                self.domain_free_gpus,
                node,
                np.asarray(gpus, dtype=np.int64),
                gpu_milli,
                cpu_milli,
                memory_mib,
            )
        except OverflowError:  # a figure beyond int64: the reference checks (and refuses) it
            outcome = ledger_kernels.REFUSED
        if outcome != ledger_kernels.DONE:
            self.reference_allocate(node, gpus, gpu_milli, cpu_milli, memory_mib)
        else:
            self.note_changed(node)

    def release(
        self,
        node: int,
        gpus: Sequence[int],
        gpu_milli: int,
        cpu_milli: int = 0,
        memory_mib: int = 0,
    ) -> None:
        """Give back what :meth:`allocate` took; refuses to free more than is held."""
        try:
            outcome = ledger_kernels.give(
                self.gpu_used_milli,
                self.gpu_usable,
                self.gpu_count,
                self.cpu_free_milli,
                self.memory_free_mib,
                self.cpu_capacity_milli,
                self.memory_capacity_mib,
                self.node_domain,
                self.free_gpu_mask,
                self.free_gpu_count,
                self.domain_free_gpus,
                node,
                np.asarray(gpus, dtype=np.int64),
                gpu_milli,
                cpu_milli,
                memory_mib,
            )
        except OverflowError:
            outcome = ledger_kernels.REFUSED
        if outcome != ledger_kernels.DONE:
            self.reference_release(node, gpus, gpu_milli, cpu_milli, memory_mib)
        else:
            self.note_changed(node)

    def reference_allocate(
        self,
        node: int,
        gpus: Sequence[int],
        gpu_milli: int,
        cpu_milli: int = 0,
        memory_mib: int = 0,
    ) -> None:
        """numpy reference of :meth:`allocate`; raises the :class:`CapacityError` that says
        which check failed when the compiled update refuses."""
        idx = self._check_gpus(node, gpus, gpu_milli)
        used = self.gpu_used_milli[node, idx]
        if np.any(used + gpu_milli > MILLI_PER_GPU):
            raise CapacityError(
                f"node {self.node_names[node]!r}: GPUs {list(gpus)} cannot take {gpu_milli} milli "
                f"more (used {used.tolist()})"
            )
        if cpu_milli > self.cpu_free_milli[node] or memory_mib > self.memory_free_mib[node]:
            raise CapacityError(
                f"node {self.node_names[node]!r}: asks cpu {cpu_milli}m / memory {memory_mib}Mi, "
                f"free {int(self.cpu_free_milli[node])}m / {int(self.memory_free_mib[node])}Mi"
            )
        self.gpu_used_milli[node, idx] += gpu_milli
        self.cpu_free_milli[node] -= cpu_milli
        self.memory_free_mib[node] -= memory_mib
        self._refresh_node_mask(node)
        self.note_changed(node)

    def reference_release(
        self,
        node: int,
        gpus: Sequence[int],
        gpu_milli: int,
        cpu_milli: int = 0,
        memory_mib: int = 0,
    ) -> None:
        """numpy reference of :meth:`release`; raises the error when it refuses."""
        idx = self._check_gpus(node, gpus, gpu_milli)
        used = self.gpu_used_milli[node, idx]
        if np.any(used < gpu_milli) or not np.all(self.gpu_usable[node, idx]):
            raise CapacityError(
                f"node {self.node_names[node]!r}: GPUs {list(gpus)} hold {used.tolist()} milli, "
                f"cannot release {gpu_milli}"
            )
        if (
            self.cpu_free_milli[node] + cpu_milli > self.cpu_capacity_milli[node]
            or self.memory_free_mib[node] + memory_mib > self.memory_capacity_mib[node]
        ):
            raise CapacityError(
                f"node {self.node_names[node]!r}: releases more cpu/memory than it holds"
            )
        self.gpu_used_milli[node, idx] -= gpu_milli
        self.cpu_free_milli[node] += cpu_milli
        self.memory_free_mib[node] += memory_mib
        self._refresh_node_mask(node)
        self.note_changed(node)

    def note_changed(self, *nodes: int) -> None:
        """Log that the free state of ``nodes`` may have changed (every allocate and release
        does; a direct write to the mutable arrays must too)."""
        log = self.changed_nodes
        if len(log) >= max(CHANGE_LOG_MIN, len(self.node_names)):
            self.changed_nodes = log = []
        log.extend(nodes)

    def _check_gpus(self, node: int, gpus: Sequence[int], gpu_milli: int) -> np.ndarray:
        if not 0 <= node < self.n_nodes:
            raise CapacityError(f"no node with index {node}")
        idx = np.asarray(gpus, dtype=np.int64)
        if idx.size == 0:
            return idx
        if not 0 < gpu_milli <= MILLI_PER_GPU:
            raise CapacityError(f"gpu_milli must be in 1..{MILLI_PER_GPU}, got {gpu_milli}")
        if len(set(idx.tolist())) != idx.size:
            raise CapacityError(f"GPU indices repeat: {list(gpus)}")
        if idx.min() < 0 or idx.max() >= self.gpu_count[node]:
            raise CapacityError(
                f"node {self.node_names[node]!r} has {int(self.gpu_count[node])} GPUs, "
                f"asked for indices {list(gpus)}"
            )
        return idx

    def _refresh_node_mask(self, node: int) -> None:
        free = (self.gpu_used_milli[node] == 0) & self.gpu_usable[node]
        mask = 0
        for g in np.flatnonzero(free):
            mask |= 1 << int(g)
        count = int(free.sum())
        delta = count - int(self.free_gpu_count[node])
        self.free_gpu_mask[node] = np.uint64(mask)
        self.free_gpu_count[node] = count
        if delta:
            self.domain_free_gpus[self.node_domain[:, node]] += delta


def _domain_of(node: Node, level: str) -> str:
    try:
        return node.domains[level]
    except KeyError:
        raise ValueError(f"node {node.name!r} has no domain for fabric level {level!r}") from None
