"""Hypothesis strategies for random but valid clusters, for property tests of anything built on
the topology model.

``clusters()`` draws a few node shapes (any GPU count up to 8, NVSwitch / bridge / PCIe-only,
one or two NUMA nodes, PCIe switch groups, MIG and unhealthy GPUs, fast or slow NICs), a fabric of
up to three levels (optionally an NVLink level first) with costs that rise level by level, and
domain names drawn from a tiny alphabet so that equal names under different parents occur often.
``kube_node``/``as_kube`` make Kubernetes Node objects (as the API serves them) for tests of
anything that reads nodes.
"""

from __future__ import annotations

from hypothesis import strategies as st
from phalanx.topology.costs import LinkCosts
from phalanx.topology.model import Cluster, FabricLevel, Gpu, Nic, Node, NvlinkKind

NETWORK_GBPS_PER_GPU = (6.25, 12.5, 25.0, 50.0, 100.0)
DOMAIN_NAMES = ("a", "b", "c")


@st.composite
def node_shapes(draw: st.DrawFn, max_gpus: int = 8) -> dict:
    """Keyword arguments for :func:`make_node` (everything but the name and domains)."""
    n = draw(st.integers(0, max_gpus))
    kind = draw(st.sampled_from(list(NvlinkKind)))
    numa_nodes = draw(st.integers(1, 2))
    per_switch = draw(st.integers(1, 4))
    mig = (
        draw(st.lists(st.booleans(), min_size=n, max_size=n))
        if draw(st.booleans())
        else [False] * n
    )
    healthy = (
        draw(st.lists(st.booleans(), min_size=n, max_size=n)) if draw(st.booleans()) else [True] * n
    )
    return {
        "gpus": n,
        "product": draw(st.sampled_from(("GPU-A", "GPU-B"))),
        "nvlink": kind,
        "nvlink_generation": draw(st.sampled_from((3, 4, 5))),
        "pcie_generation": draw(st.sampled_from((4, 5))),
        "p2p": draw(st.booleans()),
        "numa_nodes": numa_nodes,
        "gpus_per_switch": per_switch,
        "mig": tuple(mig),
        "healthy": tuple(healthy),
        "network_gbps_per_gpu": draw(st.sampled_from(NETWORK_GBPS_PER_GPU)),
        "cpu_milli": draw(st.integers(0, 64)) * 1000,
        "memory_mib": draw(st.integers(0, 64)) * 1024,
    }


def make_node(name: str, shape: dict, domains: dict[str, str]) -> Node:
    n = shape["gpus"]
    kind = shape["nvlink"]
    gpus = tuple(
        Gpu(
            g,
            f"GPU-{name}-{g}",
            shape["product"],
            80 * 1024,
            numa_node=g * shape["numa_nodes"] // n,
            pcie_switch=g // shape["gpus_per_switch"],
            nvlink_group=0
            if kind is NvlinkKind.NVSWITCH
            else (g // 2 if kind is NvlinkKind.BRIDGE else -1),
            rail=g,
            mig_enabled=shape["mig"][g],
            healthy=shape["healthy"][g],
        )
        for g in range(n)
    )
    return Node(
        name,
        gpus,
        cpu_milli=shape["cpu_milli"],
        memory_mib=shape["memory_mib"],
        nvlink=kind,
        nvlink_generation=shape["nvlink_generation"],
        pcie_generation=shape["pcie_generation"],
        p2p_supported=shape["p2p"],
        nics=tuple(Nic(f"nic{g}", 400.0, rail=g) for g in range(n)),
        network_gbps_per_gpu=shape["network_gbps_per_gpu"],
        domains=dict(domains),
        costs=LinkCosts(),
    )


@st.composite
def fabric_levels(draw: st.DrawFn, max_levels: int = 3, min_levels: int = 0) -> list[FabricLevel]:
    """Levels finest first with non-decreasing costs; an NVLink level may come first."""
    count = draw(st.integers(min_levels, max_levels))
    costs = sorted(draw(st.lists(st.floats(1.0, 100.0), min_size=count, max_size=count)))
    nvlink_first = count > 0 and draw(st.booleans())
    levels = []
    for i, cost in enumerate(costs):
        nvlink = nvlink_first and i == 0
        levels.append(
            FabricLevel(
                "clique" if nvlink else f"l{i}",
                min(cost, 1.0) if nvlink else cost,
                oversubscription=1.0,
                nvlink=nvlink,
            )
        )
    return levels


@st.composite
def clusters(draw: st.DrawFn, max_nodes: int = 10, max_levels: int = 3) -> Cluster:
    """A random valid cluster (see the module docstring)."""
    n_nodes = draw(st.integers(1, max_nodes))
    shapes = draw(st.lists(node_shapes(), min_size=1, max_size=3))
    levels = draw(fabric_levels(max_levels, min_levels=1 if n_nodes > 1 else 0))
    nodes = []
    for i in range(n_nodes):
        shape = draw(st.sampled_from(shapes))
        domains = {lvl.name: draw(st.sampled_from(DOMAIN_NAMES)) for lvl in levels}
        nodes.append(make_node(f"n{i}", shape, domains))
    return Cluster("random", nodes, levels)


# ---------------------------------------------------------------------------- Node objects
def kube_node(
    name: str,
    labels: dict[str, str] | None = None,
    gpus: int | str | None = 8,
    cpu: str = "64",
    memory: str = "512Gi",
    annotations: dict[str, str] | None = None,
    taints: list[dict] | None = None,
    extra_allocatable: dict[str, str] | None = None,
) -> dict:
    """A Node object as the API serves it: labels, annotations, taints, allocatable."""
    allocatable = {"cpu": cpu, "memory": memory, **(extra_allocatable or {})}
    if gpus is not None:
        allocatable["nvidia.com/gpu"] = str(gpus)
    meta: dict = {"name": name, "labels": dict(labels or {})}
    if annotations:
        meta["annotations"] = annotations
    return {
        "metadata": meta,
        "spec": {"taints": taints or []},
        "status": {"allocatable": allocatable},
    }


def gfd_labels(product: str = "NVIDIA-H100-80GB-HBM3", count: int = 8, memory: int = 81559) -> dict:
    """GPU Feature Discovery's labels for ``count`` GPUs of ``product`` with ``memory`` MiB."""
    return {
        "nvidia.com/gpu.product": product,
        "nvidia.com/gpu.count": str(count),
        "nvidia.com/gpu.memory": str(memory),
    }


def as_kube(cluster: Cluster) -> list[dict]:
    """Node objects for a cluster's nodes, with its levels as labels (as a labeller would)."""
    out = []
    for node in cluster.nodes:
        labels = {lvl.label: node.domains[lvl.name] for lvl in cluster.levels if lvl.label}
        labels.update(gfd_labels(node.product, node.gpu_count, node.gpus[0].memory_mib))
        cpu, memory = f"{node.cpu_milli}m", f"{node.memory_mib}Mi"
        out.append(kube_node(node.name, labels, node.gpu_count, cpu, memory))
    return out
