"""Node shapes of cluster files: a preset node with its allowed overrides, or an explicit shape
(GPUs, NVLink, PCIe, NUMA, NICs) read field by field into a node factory."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from phalanx.topology.costs import nic_gbps_to_gbytes
from phalanx.topology.fields import Reader
from phalanx.topology.model import MAX_GPUS_PER_NODE, Gpu, Nic, Node, NvlinkKind
from phalanx.topology.presets import NodePreset

NVSWITCH_GENERATIONS = (3, 4, 5)
PCIE_GENERATIONS = (4, 5)
DEFAULT_BRIDGE_GROUP_GPUS = 2
PRESET_OVERRIDES = ("cpu_milli", "memory_mib", "network_gbps_per_gpu", "gpu_memory_mib")
"""Fields of ``node`` that may adjust a preset node; anything else needs a full shape."""


def preset_maker(preset: NodePreset, shape: Reader | None) -> Callable[[str], Node]:
    if shape is None:
        return preset.make
    shape.allow_only(PRESET_OVERRIDES)
    cpu = shape.integer("cpu_milli", default=None, minimum=0)
    memory = shape.integer("memory_mib", default=None, minimum=0)
    network = shape.number("network_gbps_per_gpu", default=None, positive=True)
    gpu_memory = shape.integer("gpu_memory_mib", default=None, minimum=1)

    def make(name: str) -> Node:
        node = preset.make(name)
        changes: dict[str, Any] = {}
        if cpu is not None:
            changes["cpu_milli"] = cpu
        if memory is not None:
            changes["memory_mib"] = memory
        if network is not None:
            changes["network_gbps_per_gpu"] = network
        if gpu_memory is not None:
            changes["gpus"] = tuple(
                dataclasses.replace(g, memory_mib=gpu_memory) for g in node.gpus
            )
        return dataclasses.replace(node, **changes) if changes else node

    return make


def shape_maker(s: Reader) -> tuple[Callable[[str], Node] | None, bool]:
    """An explicit node shape; returns its factory and whether it is NVSwitch-connected."""
    s.allow_only(
        (
            "gpus",
            "product",
            "gpu_memory_mib",
            "nvlink",
            "pcie",
            "numa_nodes",
            "nics",
            "network_gbps_per_gpu",
            "cpu_milli",
            "memory_mib",
        )
    )
    n_gpus = s.integer("gpus", minimum=0)
    if n_gpus is not None and n_gpus > MAX_GPUS_PER_NODE:
        s.problems.add(s.at("gpus"), f"at most {MAX_GPUS_PER_NODE} GPUs per node")
        n_gpus = None
    has_gpus = bool(n_gpus)
    product = s.string("product") if has_gpus else s.string("product", default="")
    gpu_memory = (
        s.integer("gpu_memory_mib", minimum=1)
        if has_gpus
        else s.integer("gpu_memory_mib", default=0)
    )
    cpu = s.integer("cpu_milli", minimum=0)
    memory = s.integer("memory_mib", minimum=0)
    numa_nodes = s.integer("numa_nodes", default=1, minimum=1)

    kind, generation, group = NvlinkKind.NONE, 4, 1
    nvlink = s.mapping("nvlink", default=None)
    if nvlink is not None:
        nvlink.allow_only(("kind", "generation", "group_gpus"))
        kind_text = nvlink.choice("kind", [k.value for k in NvlinkKind])
        kind = NvlinkKind(kind_text) if kind_text else NvlinkKind.NONE
        if kind is NvlinkKind.NVSWITCH:
            generation = nvlink.integer("generation")
            if generation is not None and generation not in NVSWITCH_GENERATIONS:
                nvlink.problems.add(
                    nvlink.at("generation"),
                    f"must be one of {NVSWITCH_GENERATIONS}, got {generation}",
                )
                generation = None
        if kind is NvlinkKind.BRIDGE:
            group = nvlink.integer("group_gpus", default=DEFAULT_BRIDGE_GROUP_GPUS, minimum=2)

    pcie_generation, gpus_per_switch, p2p = 5, 1, True
    pcie = s.mapping("pcie", default=None)
    if pcie is not None:
        pcie.allow_only(("generation", "gpus_per_switch", "p2p"))
        pcie_generation = pcie.integer("generation", default=5)
        if pcie_generation is not None and pcie_generation not in PCIE_GENERATIONS:
            pcie.problems.add(
                pcie.at("generation"),
                f"must be one of {PCIE_GENERATIONS}, got {pcie_generation}",
            )
            pcie_generation = None
        gpus_per_switch = pcie.integer("gpus_per_switch", default=1, minimum=1)
        p2p = pcie.boolean("p2p", default=True)

    nic_count, nic_gbit_s = 0, 0.0
    nics = s.mapping("nics", default=None)
    if nics is not None:
        nics.allow_only(("count", "gbit_s"))
        nic_count = nics.integer("count", minimum=1)
        nic_gbit_s = nics.number("gbit_s", positive=True)
    network = s.number("network_gbps_per_gpu", default=None, positive=True)
    if network is None and nics is None and not s.has("network_gbps_per_gpu") and has_gpus:
        s.problems.add(s.path, "give 'nics' or 'network_gbps_per_gpu' (scale-out bandwidth)")

    values = (
        n_gpus, product, gpu_memory, cpu, memory, numa_nodes, generation, group,
        pcie_generation, gpus_per_switch, p2p, nic_count, nic_gbit_s,
    )  # fmt: skip
    if any(v is None for v in values) or (network is None and has_gpus and nics is None):
        return None, False
    if network is None and has_gpus:
        network = nic_gbps_to_gbytes(nic_count * nic_gbit_s) / n_gpus
    shape = _Shape(
        n_gpus, product, gpu_memory, cpu, memory, numa_nodes, kind, generation, group,
        pcie_generation, gpus_per_switch, p2p, nic_count, nic_gbit_s, network,
    )  # fmt: skip
    return shape.make, kind is NvlinkKind.NVSWITCH


@dataclass(frozen=True)
class _Shape:
    """An explicit node shape from a cluster file; GPUs are spread over NUMA nodes, PCIe
    switches, NVLink groups and NICs in index order."""

    gpus: int
    product: str
    gpu_memory_mib: int
    cpu_milli: int
    memory_mib: int
    numa_nodes: int
    nvlink: NvlinkKind
    nvlink_generation: int
    nvlink_group_gpus: int
    pcie_generation: int
    gpus_per_switch: int
    p2p: bool
    nic_count: int
    nic_gbit_s: float
    network_gbps_per_gpu: float | None
    """``None`` for a CPU-only node (no GPU traffic to carry)."""

    def make(self, name: str) -> Node:
        n = self.gpus
        gpus = tuple(
            Gpu(
                g,
                f"GPU-{name}-{g}",
                self.product,
                self.gpu_memory_mib,
                numa_node=g * self.numa_nodes // n,
                pcie_switch=g // self.gpus_per_switch,
                nvlink_group=self._nvlink_group(g),
                rail=g * self.nic_count // n if self.nic_count else -1,
            )
            for g in range(n)
        )
        nics = tuple(
            Nic(f"nic{k}", self.nic_gbit_s, numa_node=k * self.numa_nodes // self.nic_count, rail=k)
            for k in range(self.nic_count)
        )
        node = Node(
            name,
            gpus,
            cpu_milli=self.cpu_milli,
            memory_mib=self.memory_mib,
            nvlink=self.nvlink,
            nvlink_generation=self.nvlink_generation,
            pcie_generation=self.pcie_generation,
            p2p_supported=self.p2p,
            nics=nics,
        )
        if self.network_gbps_per_gpu is None:
            return node
        return dataclasses.replace(node, network_gbps_per_gpu=self.network_gbps_per_gpu)

    def _nvlink_group(self, g: int) -> int:
        if self.nvlink is NvlinkKind.NVSWITCH:
            return 0
        if self.nvlink is NvlinkKind.BRIDGE:
            return g // self.nvlink_group_gpus
        return -1
