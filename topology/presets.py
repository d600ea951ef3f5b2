"""Built-in node types and cluster fabrics.

Node figures (GPU memory, NVLink generation, NUMA layout, NIC per GPU) come from NVIDIA's
reference architectures as summarised in the research notes; allocatable cpu counts hyperthreads
as Kubernetes does. A cluster preset is ``NODE_PRESET:COUNT`` (or an alias such as
``superpod-h100:256``): that many nodes on a rail-optimised fat tree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from phalanx.topology.costs import (
    COST_NVLINK5,
    COST_SAME_LEAF,
    COST_SAME_SPINE,
    NVLINK_HOP_LATENCY_US,
)
from phalanx.topology.model import Cluster, FabricLevel, Gpu, Nic, Node, NvlinkKind

GIB_IN_MIB = 1024
NDR_GBIT_S = 400.0
HDR_GBIT_S = 200.0
SUPERPOD_H100_SU_NODES = 32
"""DGX SuperPOD H100: 32 nodes per scalable unit, one rail leaf per GPU."""
SUPERPOD_A100_SU_NODES = 20
NVL72_TRAYS_PER_RACK = 18
NVL72_RACKS_PER_SU = 8
"""DGX SuperPOD GB200: 8 NVL72 racks (576 GPUs) per scalable unit."""
SUS_PER_POD = 16
"""Above 16 scalable units a core tier appears (DGX SuperPOD B200 table)."""
MAX_PRESET_NODES = 100_000
"""Largest ``PRESET:COUNT``: a typo such as ``superpod-h100:100000000`` would otherwise exhaust
memory. 100,000 DGX nodes build and compile in about 11 s and 0.5 GB; the largest cluster the
benchmarks use is 20,000 nodes."""


@dataclass(frozen=True)
class NodePreset:
    name: str
    description: str
    make: Callable[[str], Node]
    su_nodes: int
    nvlink_domain_nodes: int = 1
    """Nodes per multi-node NVLink domain (18 trays for NVL72), 1 when NVLink stays in a node."""
    default_nodes: int = 1
    """Nodes of ``PRESET`` given without a count (a trace's own cluster size for ``philly``)."""


def _uuid(node: str, g: int) -> str:
    return f"GPU-{node}-{g}"


DGX_GPUS = 8
DGX_GPUS_PER_SOCKET = 4


def _dgx(
    name: str,
    product: str,
    *,
    gpus_per_pcie_switch: int,
    nic_gbit_s: float,
    cpu_milli: int,
    memory_gib: int,
    nvlink_generation: int,
    pcie_generation: int,
) -> Node:
    """An 8-GPU NVSwitch DGX: two sockets of four GPUs, one compute NIC (rail) per GPU."""
    gpus = tuple(
        Gpu(
            g,
            _uuid(name, g),
            product,
            80 * GIB_IN_MIB,
            numa_node=g // DGX_GPUS_PER_SOCKET,
            pcie_switch=g // gpus_per_pcie_switch,
            nvlink_group=0,
            rail=g,
        )
        for g in range(DGX_GPUS)
    )
    nics = tuple(
        Nic(f"mlx5_{g}", nic_gbit_s, numa_node=g // DGX_GPUS_PER_SOCKET, rail=g)
        for g in range(DGX_GPUS)
    )
    return Node(
        name,
        gpus,
        cpu_milli=cpu_milli,
        memory_mib=memory_gib * GIB_IN_MIB,
        nvlink=NvlinkKind.NVSWITCH,
        nvlink_generation=nvlink_generation,
        pcie_generation=pcie_generation,
        nics=nics,
        network_gbps_per_gpu=nic_gbit_s / DGX_GPUS,
    )


def dgx_h100(name: str) -> Node:
    """DGX H100: each GPU behind its own PCIe Gen5 switch with a 400G NDR NIC."""
    return _dgx(
        name,
        "NVIDIA-H100-80GB-HBM3",
        gpus_per_pcie_switch=1,
        nic_gbit_s=NDR_GBIT_S,
        cpu_milli=224_000,
        memory_gib=2048,
        nvlink_generation=4,
        pcie_generation=5,
    )


def dgx_a100(name: str) -> Node:
    """DGX A100: GPU pairs behind PCIe Gen4 switches, a 200G HDR NIC per GPU."""
    return _dgx(
        name,
        "NVIDIA-A100-SXM4-80GB",
        gpus_per_pcie_switch=2,
        nic_gbit_s=HDR_GBIT_S,
        cpu_milli=256_000,
        memory_gib=1024,
        nvlink_generation=3,
        pcie_generation=4,
    )


def hgx_pcie_l40s(name: str) -> Node:
    """8 L40S, pairs behind PCIe Gen4 switches, two sockets, two 200G NICs for the node."""
    gpus = tuple(
        Gpu(
            g,
            _uuid(name, g),
            "NVIDIA-L40S",
            45 * GIB_IN_MIB,
            numa_node=g // 4,
            pcie_switch=g // 2,
            rail=g // 4,
        )
        for g in range(8)
    )
    nics = tuple(Nic(f"mlx5_{s}", HDR_GBIT_S, numa_node=s, rail=s) for s in range(2))
    return Node(
        name,
        gpus,
        cpu_milli=128_000,
        memory_mib=1024 * GIB_IN_MIB,
        nvlink=NvlinkKind.NONE,
        pcie_generation=4,
        nics=nics,
        network_gbps_per_gpu=2 * HDR_GBIT_S / 8 / 8,
    )


def gb200_nvl72_tray(name: str) -> Node:
    """One compute tray of a GB200 NVL72 rack: 4 Blackwell GPUs, 2 Grace CPUs, 4 NDR NICs."""
    gpus = tuple(
        Gpu(
            g,
            _uuid(name, g),
            "NVIDIA-GB200",
            186 * GIB_IN_MIB,
            numa_node=g // 2,
            pcie_switch=g,
            nvlink_group=0,
            rail=g,
        )
        for g in range(4)
    )
    nics = tuple(Nic(f"mlx5_{g}", NDR_GBIT_S, numa_node=g // 2, rail=g) for g in range(4))
    return Node(
        name,
        gpus,
        cpu_milli=144_000,
        memory_mib=960 * GIB_IN_MIB,
        nvlink=NvlinkKind.NVSWITCH,
        nvlink_generation=5,
        pcie_generation=5,
        nics=nics,
        network_gbps_per_gpu=NDR_GBIT_S / 8,
    )


PHILLY_NODES = 352
"""Philly's node count as the Helios authors used it (``philly_vc_node_counts.csv``)."""
PHILLY_GPUS_PER_NODE = 8
PHILLY_GPU_PRODUCT = "Philly-24GB"
"""The raw release's machine list shows 8-GPU servers with 24 GB GPUs (``m31,8, 24GB``)."""
PHILLY_GPU_MEMORY_MIB = 24 * GIB_IN_MIB
PHILLY_CPU_MILLI = 48_000
PHILLY_MEMORY_MIB = 256 * GIB_IN_MIB
PHILLY_NIC_GBIT_S = 100.0
"""ATC '19: servers joined by 100 Gb/s InfiniBand, one NIC per server."""
PHILLY_RACK_NODES = 32
PHILLY_PCIE_GENERATION = 4
"""Gen3 hosts; the cost table's slowest generation is Gen4."""
BITS_PER_BYTE = 8


def philly_host(name: str) -> Node:
    """A Microsoft Philly 2017 server: 8 GPUs on PCIe in pairs per switch, two sockets, one
    100G NIC; the cluster the Philly trace ran on, so ``philly:N`` means the same host to
    ``phalanx simulate`` and to ``topology show``/``place``/``serve``."""
    gpus = tuple(
        Gpu(
            g,
            _uuid(name, g),
            PHILLY_GPU_PRODUCT,
            PHILLY_GPU_MEMORY_MIB,
            numa_node=g // (PHILLY_GPUS_PER_NODE // 2),
            pcie_switch=g // 2,
        )
        for g in range(PHILLY_GPUS_PER_NODE)
    )
    return Node(
        name,
        gpus,
        cpu_milli=PHILLY_CPU_MILLI,
        memory_mib=PHILLY_MEMORY_MIB,
        nvlink=NvlinkKind.NONE,
        pcie_generation=PHILLY_PCIE_GENERATION,
        nics=(Nic("ib0", PHILLY_NIC_GBIT_S),),
        network_gbps_per_gpu=PHILLY_NIC_GBIT_S / BITS_PER_BYTE / PHILLY_GPUS_PER_NODE,
    )


NODE_PRESETS: dict[str, NodePreset] = {
    p.name: p
    for p in (
        NodePreset(
            "dgx-h100",
            "DGX/HGX H100: 8x H100 SXM on NVSwitch (NVLink4), 8x 400G rails",
            dgx_h100,
            SUPERPOD_H100_SU_NODES,
        ),
        NodePreset(
            "dgx-a100",
            "DGX/HGX A100: 8x A100 SXM on NVSwitch (NVLink3), 8x 200G rails",
            dgx_a100,
            SUPERPOD_A100_SU_NODES,
        ),
        NodePreset(
            "hgx-pcie-l40s",
            "8x L40S PCIe Gen4, pairs behind switches, 2 sockets, 2x 200G",
            hgx_pcie_l40s,
            SUPERPOD_H100_SU_NODES,
        ),
        NodePreset(
            "gb200-nvl72",
            "GB200 NVL72 compute tray: 4 GPUs, rack-wide NVLink5 clique",
            gb200_nvl72_tray,
            NVL72_TRAYS_PER_RACK * NVL72_RACKS_PER_SU,
            nvlink_domain_nodes=NVL72_TRAYS_PER_RACK,
        ),
        NodePreset(
            "philly",
            "Microsoft Philly 2017 host: 8x 24 GB GPUs on PCIe, 1x 100G (default 352 nodes)",
            philly_host,
            PHILLY_RACK_NODES,
            default_nodes=PHILLY_NODES,
        ),
    )
}

CLUSTER_ALIASES = {
    "superpod-h100": "dgx-h100",
    "superpod-a100": "dgx-a100",
    "l40s-cluster": "hgx-pcie-l40s",
    "nvl72": "gb200-nvl72",
}


def rail_fat_tree(
    nodes: list[Node],
    su_nodes: int,
    oversubscription: float = 1.0,
    nvlink_domain_nodes: int = 1,
    sus_per_pod: int = SUS_PER_POD,
) -> list[FabricLevel]:
    """Assign ``nodes`` (in order) to a rail-optimised fat tree and return its levels.

    Levels, finest first: an NVLink clique when ``nvlink_domain_nodes > 1`` (NVL72 racks), the
    scalable unit (same-rail traffic is one leaf hop), then the spine; clusters of more than
    ``sus_per_pod`` units get a pod level under a core that may be oversubscribed.
    """
    if su_nodes < 1 or nvlink_domain_nodes < 1:
        raise ValueError("su_nodes and nvlink_domain_nodes must be at least 1")
    if nvlink_domain_nodes > 1 and su_nodes % nvlink_domain_nodes:
        raise ValueError(
            f"su_nodes {su_nodes} is not a multiple of the NVLink domain {nvlink_domain_nodes}"
        )
    n_sus = -(-len(nodes) // su_nodes)
    levels: list[FabricLevel] = []
    if nvlink_domain_nodes > 1:
        levels.append(
            FabricLevel(
                "clique",
                COST_NVLINK5,
                NVLINK_HOP_LATENCY_US,
                nvlink=True,
                label="nvidia.com/gpu.clique",
            )
        )
    levels.append(FabricLevel("su", COST_SAME_LEAF, label="phalanx.io/su"))
    multi_pod = n_sus > sus_per_pod
    if multi_pod:
        levels.append(FabricLevel("pod", COST_SAME_SPINE, label="phalanx.io/pod"))
        levels.append(
            FabricLevel(
                "core",
                COST_SAME_SPINE * oversubscription,
                oversubscription=oversubscription,
                label="phalanx.io/core",
            )
        )
    else:
        levels.append(
            FabricLevel(
                "spine",
                COST_SAME_SPINE * oversubscription,
                oversubscription=oversubscription,
                label="phalanx.io/spine",
            )
        )
    for i, node in enumerate(nodes):
        su = i // su_nodes
        if nvlink_domain_nodes > 1:
            node.domains["clique"] = f"clique{i // nvlink_domain_nodes}"
        node.domains["su"] = f"su{su}"
        if multi_pod:
            node.domains["pod"] = f"pod{su // sus_per_pod}"
            node.domains["core"] = "core"
        else:
            node.domains["spine"] = "spine"
    return levels


def node_preset(name: str) -> NodePreset:
    try:
        return NODE_PRESETS[CLUSTER_ALIASES.get(name, name)]
    except KeyError:
        known = sorted([*NODE_PRESETS, *CLUSTER_ALIASES])
        raise KeyError(f"unknown preset {name!r}; known presets: {', '.join(known)}") from None


def cluster_preset(spec: str, oversubscription: float = 1.0) -> Cluster:
    """Build a cluster from ``PRESET`` (its default size, one node for most) or
    ``PRESET:COUNT`` with 1 <= COUNT <= :data:`MAX_PRESET_NODES`."""
    base, _, count_text = spec.partition(":")
    preset = node_preset(base)
    if count_text == "auto":
        # sized from a trace's load (simulator.clusters): only simulate and sweep have a trace
        raise ValueError(
            f"cluster preset {spec!r}: 'auto' sizes a cluster from a trace, so only "
            "'phalanx simulate' and 'phalanx sweep' take it; give the node count they report "
            f"({base}:N)"
        )
    try:
        count = int(count_text) if count_text else preset.default_nodes
    except ValueError:
        raise ValueError(
            f"cluster preset {spec!r}: node count {count_text!r} is not an integer"
        ) from None
    if count < 1:
        raise ValueError(f"cluster preset {spec!r}: node count must be at least 1")
    if count > MAX_PRESET_NODES:
        raise ValueError(
            f"cluster preset {spec!r}: node count {count:,} is above the maximum, "
            f"{MAX_PRESET_NODES:,}"
        )
    prefix = preset.name.split("-")[-1]
    nodes = [preset.make(f"{prefix}-{i:05d}") for i in range(count)]
    levels = rail_fat_tree(nodes, preset.su_nodes, oversubscription, preset.nvlink_domain_nodes)
    return Cluster(spec, nodes, levels)


def is_preset(spec: str) -> bool:
    base = spec.partition(":")[0]
    return base in NODE_PRESETS or base in CLUSTER_ALIASES
