"""The object model of a GPU cluster: nodes with their GPUs and NICs, and a tree of fabric levels.

This is the plain-data edge of the package: every topology source (presets, cluster files,
Kubernetes Node objects, NVML discovery) produces these dataclasses, and :mod:`topology.compiled`
turns them into numpy arrays for the placement hot path.

Levels: level 0 is always the node itself; ``Cluster.levels`` lists the fabric levels above it,
finest first (e.g. NVL72 clique, scalable unit, spine). The last level has exactly one domain,
the whole cluster, so every pair of GPUs has a lowest common level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np
from phalanx.topology.costs import (
    COST_MIG,
    COST_SAME_GPU,
    COST_SAME_SPINE,
    DEFAULT_HOP_LATENCY_US,
    LinkCosts,
    cost_from_gbps,
)

if TYPE_CHECKING:
    from phalanx.topology.compiled import CompiledCluster

NODE_LEVEL = "node"
CLUSTER_LEVEL = "cluster"
MILLI_PER_GPU = 1000
"""A whole GPU in ``gpu_milli`` units (Alibaba openb and the FGD paper use the same unit)."""
MAX_GPUS_PER_NODE = 64
"""Free GPUs of a node are kept as one uint64 bitmask."""


class NvlinkKind(StrEnum):
    """How the GPUs of one node are joined by NVLink."""

    NVSWITCH = "nvswitch"
    """All GPUs of the node in one non-blocking NVSwitch domain (HGX/DGX A100, H100, B200)."""
    BRIDGE = "bridge"
    """NVLink bridges join pairs of PCIe cards; ``Gpu.nvlink_group`` names the pair."""
    NONE = "none"
    """PCIe only."""


@dataclass(frozen=True)
class Gpu:
    """One physical GPU of a node."""

    index: int
    uuid: str
    product: str
    memory_mib: int
    numa_node: int = 0
    pcie_switch: int = 0
    """GPUs with the same value sit behind one PCIe switch (PIX/PXB to each other)."""
    nvlink_group: int = -1
    """GPUs with the same non-negative value share NVLink; -1 for none."""
    rail: int = -1
    """Index of the NIC (rail) at PIX/PXB distance, -1 if the GPU has no NIC of its own."""
    mig_enabled: bool = False
    healthy: bool = True


@dataclass(frozen=True)
class Nic:
    """A compute NIC; ``rail`` is the leaf/rail it is cabled to in a rail-optimised fabric."""

    name: str
    line_rate_gbit_s: float
    numa_node: int = 0
    rail: int = 0


@dataclass(frozen=True)
class Node:
    """A schedulable host: its GPUs, NICs, allocatable cpu/memory and fabric coordinates."""

    name: str
    gpus: tuple[Gpu, ...]
    cpu_milli: int
    memory_mib: int
    nvlink: NvlinkKind = NvlinkKind.NONE
    nvlink_generation: int = 4
    pcie_generation: int = 5
    p2p_supported: bool = True
    nics: tuple[Nic, ...] = ()
    network_gbps_per_gpu: float = 50.0
    """Scale-out bandwidth per GPU in GB/s per direction (one 400G NIC per GPU = 50)."""
    domains: dict[str, str] = field(default_factory=dict)
    """Fabric level name -> domain name at that level (names need be unique only within their
    parent domain, as with Kueue topology labels)."""
    labels: dict[str, str] = field(default_factory=dict)
    costs: LinkCosts = field(default_factory=LinkCosts)
    taints: tuple[str, ...] = ()
    """Keys of the node's NoSchedule/NoExecute taints; a member must tolerate every one
    (``MemberRequest.tolerations``)."""

    @property
    def gpu_count(self) -> int:
        return len(self.gpus)

    @property
    def product(self) -> str:
        """The node's GPU model ('' for a CPU-only node)."""
        return self.gpus[0].product if self.gpus else ""

    def pair_cost(self) -> np.ndarray:
        """Symmetric ``(gpus, gpus)`` matrix of normalised costs between this node's GPUs."""
        n = len(self.gpus)
        cost = np.zeros((n, n), dtype=np.float64)
        for i, a in enumerate(self.gpus):
            for j in range(i + 1, n):
                cost[i, j] = cost[j, i] = self._pair(a, self.gpus[j])
        return cost

    def link_signature(self) -> tuple[object, ...]:
        """Everything :meth:`pair_cost` and :meth:`egress_cost` read: nodes with equal
        signatures have equal cost tables, so a cluster computes each table once."""
        gpus = tuple((g.numa_node, g.pcie_switch, g.nvlink_group, g.mig_enabled) for g in self.gpus)
        return (
            gpus,
            self.nvlink,
            self.nvlink_generation,
            self.pcie_generation,
            self.p2p_supported,
            self.network_gbps_per_gpu,
            self.costs,
        )

    def _pair(self, a: Gpu, b: Gpu) -> float:
        c = self.costs
        if a.index == b.index:
            return COST_SAME_GPU
        if a.mig_enabled or b.mig_enabled:
            return COST_MIG
        if a.nvlink_group >= 0 and a.nvlink_group == b.nvlink_group:
            if self.nvlink is NvlinkKind.NVSWITCH:
                return c.nvswitch(self.nvlink_generation)
            return c.nvlink_bridge
        if a.numa_node != b.numa_node:
            pcie = c.cross_socket
        elif a.pcie_switch == b.pcie_switch:
            pcie = c.pcie(self.pcie_generation)
        else:
            pcie = c.pcie(self.pcie_generation) * c.host_bridge_factor
        return pcie if self.p2p_supported else pcie * c.no_p2p_factor

    def egress_cost(self) -> float:
        """Cost of a GPU talking to another node: the NIC's bandwidth, and never cheaper than
        the worst path inside the node (traffic reaches the NIC over that same PCIe tree)."""
        nic_cost = cost_from_gbps(self.network_gbps_per_gpu)
        pair = self.pair_cost()
        finite = pair[np.isfinite(pair)]
        worst_inside = float(finite.max()) if finite.size else 0.0
        return max(nic_cost, worst_inside)


@dataclass(frozen=True)
class FabricLevel:
    """One level of the fabric tree above the node (rail group, scalable unit, spine, zone...).

    ``cost`` is the normalised cost between GPUs of different nodes whose lowest common domain is
    at this level. ``nvlink`` marks a multi-node NVLink domain (a GB200 NVL72 clique), whose
    traffic never leaves NVLink and so skips the nodes' NIC cost.
    """

    name: str
    cost: float
    hop_latency_us: float = DEFAULT_HOP_LATENCY_US
    oversubscription: float = 1.0
    nvlink: bool = False
    label: str = ""
    """The Kubernetes node label this level is read from, if any."""


@dataclass
class Cluster:
    """Nodes plus the ordered fabric levels above them (finest first, root last)."""

    name: str
    nodes: list[Node]
    levels: list[FabricLevel]

    def __post_init__(self) -> None:
        ensure_root_level(self)

    @property
    def level_names(self) -> list[str]:
        """All levels, node first, root last."""
        return [NODE_LEVEL, *(lvl.name for lvl in self.levels)]

    @property
    def gpu_count(self) -> int:
        return sum(n.gpu_count for n in self.nodes)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node named {name!r} in cluster {self.name!r}")

    def compile(self) -> CompiledCluster:
        from phalanx.topology.compiled import CompiledCluster

        return CompiledCluster.build(self)


def ensure_root_level(cluster: Cluster) -> None:
    """Append a one-domain ``cluster`` level unless the top level already has a single domain,
    so that every GPU pair has a lowest common level. Its cost is the top level's (the core
    is assumed as good as the layer below unless the cluster file says otherwise); above an
    NVLink level, whose traffic never touches the network, it is a network level of unknown
    shape, costed as a non-blocking spine."""
    if not cluster.levels:
        if len(cluster.nodes) > 1:
            raise ValueError(
                f"cluster {cluster.name!r} has {len(cluster.nodes)} nodes but no fabric levels"
            )
        return
    top = cluster.levels[-1]
    top_domains = {n.domains.get(top.name, "") for n in cluster.nodes}
    if len(top_domains) <= 1:
        return
    if top.name == CLUSTER_LEVEL:
        raise ValueError(
            f"cluster {cluster.name!r}: the top level {CLUSTER_LEVEL!r} must have one domain, "
            f"has {len(top_domains)}"
        )
    if top.nvlink:
        root = FabricLevel(CLUSTER_LEVEL, cost=max(top.cost, COST_SAME_SPINE))
    else:
        root = FabricLevel(CLUSTER_LEVEL, cost=top.cost, hop_latency_us=top.hop_latency_us)
    cluster.levels.append(root)
    for n in cluster.nodes:
        n.domains.setdefault(CLUSTER_LEVEL, CLUSTER_LEVEL)


def level_cost_is_monotone(levels: list[FabricLevel]) -> bool:
    """Costs must not fall as the lowest common level rises, and NVLink levels come first."""
    seen_network = False
    last = -math.inf
    for lvl in levels:
        if lvl.nvlink and seen_network:
            return False
        seen_network = seen_network or not lvl.nvlink
        if lvl.cost < last:
            return False
        last = lvl.cost
    return True
