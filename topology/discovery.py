"""GPU discovery on a node: NVML facts -> a JSON document -> a :class:`~topology.model.Node`.

``phalanx topology discover`` runs :func:`discover` on a GPU node (e.g. as a DaemonSet) and
publishes the document as the node annotation ``phalanx.io/gpu-topology``;
:func:`node_from_discovery` turns it back into a node wherever the cluster is assembled. The
document keeps facts (links, PCIe levels, NUMA nodes, NICs), not costs, so cost tables can change
without re-running discovery.

Document (``schema_version`` 1)::

    {"kind": "phalanx.io/gpu-topology", "schema_version": 1, "driver_version": "535.129.03",
     "gpus": [{"index": 0, "uuid": "GPU-…", "product": "NVIDIA-H100-80GB-HBM3",
               "memory_mib": 81559, "pci_bus_id": "0000:1b:00.0", "numa_node": 0,
               "mig_enabled": false, "pcie_generation": 5, "clique": null,
               "nvlink": {"generation": 4, "switch_links": 18, "gpu_links": {}}}, …],
     "pcie_level": [[0, 40, …], …],      # NVML_TOPOLOGY_* between GPUs (10 PIX … 50 SYS)
     "p2p": [[true, …], …],              # P2P read status OK
     "nics": [{"name": "mlx5_0", "pci_bus_id": "0000:1c:00.0", "numa_node": 0,
               "line_rate_gbit_s": 400.0, "gpu_pcie_level": [20, 40, …]}, …]}
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from typing import Any

from phalanx.topology.costs import LinkCosts
from phalanx.topology.fields import Problems, Reader, join
from phalanx.topology.model import MAX_GPUS_PER_NODE, Gpu, Nic, Node, NvlinkKind
from phalanx.topology.nvml_backend import (
    FABRIC_STATE_COMPLETED,
    MIG_ENABLED,
    NVLINK_REMOTE_GPU,
    NVLINK_REMOTE_SWITCH,
    NVML_SUCCESS,
    P2P_STATUS_OK,
    SYSFS_NO_NUMA_NODE,
    DiscoveryError,
    GpuBackend,
    sysfs_address,
)

DOCUMENT_KIND = "phalanx.io/gpu-topology"
SCHEMA_VERSION = 1
ANNOTATION_GPU_TOPOLOGY = "phalanx.io/gpu-topology"
"""The node annotation that holds the discovery document."""
MIB = 1024 * 1024

# NVML_TOPOLOGY_* levels: the deepest common PCIe ancestor of two devices.
PCIE_SAME_BOARD = 0
PCIE_SAME_SWITCH = 20
"""PIX (10) and PXB (20): behind one PCIe switch complex, no host bridge."""
PCIE_HOST_BRIDGE = 30
PCIE_SAME_NUMA = 40
PCIE_CROSS_SOCKET = 50
PCIE_LEVELS = (PCIE_SAME_BOARD, 10, PCIE_SAME_SWITCH, PCIE_HOST_BRIDGE, PCIE_SAME_NUMA, 50)

NVLINK_GENERATION_OF_VERSION = {1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 6: 4, 7: 5, 8: 6}
"""``NVML_NVLINK_VERSION_*`` (1.0, 2.0, 2.2, 3.0, 3.1, 4.0, 5.0, 6.0) -> NVLink generation."""
OLDEST_NVSWITCH_GENERATION = 3
NEWEST_NVSWITCH_GENERATION = 5
"""The NVSwitch generations :class:`~topology.costs.LinkCosts` has costs for. Older switched
NVLink (DGX-2, 150 GB/s per direction) costs what a bridge does (3.0) and is modelled as one;
newer generations are costed as the newest known, which can only overstate their cost."""
PCIE_GENERATION_RANGE = (4, 5)
"""PCIe generations with a cost; others are clamped into this range."""
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*Gb/sec")


class DiscoveryDocumentError(ValueError):
    """A discovery document (usually a node annotation) that does not describe a node."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


# ---------------------------------------------------------------------------- discovery
def gfd_product_name(nvml_name: str) -> str:
    """NVML's ``NVIDIA H100 80GB HBM3`` as GPU Feature Discovery labels it,
    ``NVIDIA-H100-80GB-HBM3`` (spaces become dashes)."""
    return "-".join(nvml_name.split())


def pcie_level_from_paths(path_a: str, path_b: str, same_numa: bool) -> int:
    """Classify two PCI devices the way ``nvidia-smi topo`` does, from their sysfs paths
    (``/sys/devices/pci0000:15/0000:15:01.0/…/0000:1b:00.0``)."""
    a, b = _pci_chain(path_a), _pci_chain(path_b)
    if not a or not b or a[0] != b[0]:
        return PCIE_SAME_NUMA if same_numa else PCIE_CROSS_SOCKET
    bridges_a, bridges_b = a[1:-1], b[1:-1]
    shared = 0
    for x, y in zip(bridges_a, bridges_b, strict=False):
        if x != y:
            break
        shared += 1
    return PCIE_SAME_SWITCH if shared else PCIE_HOST_BRIDGE


def _pci_chain(path: str) -> list[str]:
    """Root complex then every PCI function below it, down to the device itself."""
    parts = [p for p in path.split("/") if p]
    roots = [i for i, p in enumerate(parts) if p.startswith("pci")]
    return parts[roots[0] :] if roots else []


def nic_line_rate_gbit_s(rate: str) -> float:
    """``400 Gb/sec (4X NDR)`` -> 400.0; 0.0 when the port reports no rate."""
    match = _RATE.match(rate)
    return float(match.group(1)) if match else 0.0


def discover(backend: GpuBackend) -> dict[str, Any]:
    """Read the node's GPUs, links, PCIe tree, NUMA nodes and NICs into a document."""
    n = backend.device_count()
    if n == 0:
        raise DiscoveryError("NVML reports no GPUs on this node")
    if n > MAX_GPUS_PER_NODE:
        raise DiscoveryError(f"{n} GPUs found; at most {MAX_GPUS_PER_NODE} are supported")
    addresses = [sysfs_address(backend.pci_bus_id(g)) for g in range(n)]
    index_of = {a: g for g, a in enumerate(addresses)}
    affinities = [tuple(backend.cpu_affinity(g)) for g in range(n)]
    gpus = []
    for g in range(n):
        gpus.append(
            {
                "index": g,
                "uuid": backend.uuid(g),
                "product": gfd_product_name(backend.name(g)),
                "memory_mib": backend.memory_total_bytes(g) // MIB,
                "pci_bus_id": addresses[g],
                "numa_node": _numa_node(backend, addresses[g], affinities, g),
                "mig_enabled": backend.mig_mode(g) == MIG_ENABLED,
                "pcie_generation": backend.max_pcie_generation(g),
                "clique": _clique(backend, g),
                "nvlink": _nvlink_summary(backend, g, index_of),
            }
        )
    paths = [backend.pci_path(a) for a in addresses]
    nics = []
    for nic in backend.infiniband_devices():
        numa = backend.pci_numa_node(nic.pci_address)
        nic_path = backend.pci_path(nic.pci_address)
        nics.append(
            {
                "name": nic.name,
                "pci_bus_id": nic.pci_address,
                "numa_node": max(numa, 0),
                "line_rate_gbit_s": nic_line_rate_gbit_s(nic.rate),
                "gpu_pcie_level": [
                    pcie_level_from_paths(paths[g], nic_path, gpus[g]["numa_node"] == numa)
                    for g in range(n)
                ],
            }
        )
    return {
        "kind": DOCUMENT_KIND,
        "schema_version": SCHEMA_VERSION,
        "driver_version": backend.driver_version(),
        "gpus": gpus,
        "pcie_level": [
            [0 if a == b else backend.common_ancestor(a, b) for b in range(n)] for a in range(n)
        ],
        "p2p": [
            [a == b or backend.p2p_read_status(a, b) == P2P_STATUS_OK for b in range(n)]
            for a in range(n)
        ],
        "nics": nics,
    }


def _numa_node(
    backend: GpuBackend, address: str, affinities: Sequence[tuple[int, ...]], g: int
) -> int:
    """sysfs's NUMA node of the GPU; where the platform reports none (-1), GPUs with the same
    CPU affinity share a number instead."""
    numa = backend.pci_numa_node(address)
    if numa != SYSFS_NO_NUMA_NODE:
        return numa
    distinct = list(dict.fromkeys(affinities))
    return distinct.index(affinities[g])


def _clique(backend: GpuBackend, g: int) -> str | None:
    """``<clusterUuid>.<cliqueId>`` (the GFD ``nvidia.com/gpu.clique`` form) once the fabric
    manager has registered the GPU; ``None`` on single-node NVLink systems."""
    fabric = backend.fabric(g)
    if fabric is None or fabric.state != FABRIC_STATE_COMPLETED or fabric.status != NVML_SUCCESS:
        return None
    return f"{fabric.cluster_uuid}.{fabric.clique_id}"


def _nvlink_summary(backend: GpuBackend, g: int, index_of: dict[str, int]) -> dict[str, Any]:
    """Links into NVSwitches are counted; links to other GPUs are counted per peer."""
    switch_links = 0
    gpu_links: dict[str, int] = {}
    generation = 0
    for link in backend.nvlinks(g):
        generation = max(generation, NVLINK_GENERATION_OF_VERSION.get(link.version, 0))
        if link.remote_type == NVLINK_REMOTE_SWITCH:
            switch_links += 1
        elif link.remote_type == NVLINK_REMOTE_GPU:
            peer = index_of.get(sysfs_address(link.remote_bus_id))
            if peer is not None and peer != g:
                gpu_links[str(peer)] = gpu_links.get(str(peer), 0) + 1
    return {"generation": generation, "switch_links": switch_links, "gpu_links": gpu_links}


def publish_annotation(doc: dict[str, Any], node_name: str, api: Any = None) -> None:
    """Write ``doc`` to the node's ``phalanx.io/gpu-topology`` annotation. ``api`` is a
    ``kubernetes.client.CoreV1Api``; by default one is made from the in-cluster service account
    (or the local kubeconfig)."""
    from kubernetes import client, config

    if api is None:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            try:
                config.load_kube_config()
            except config.ConfigException as exc:
                raise DiscoveryError(f"no Kubernetes credentials to publish with: {exc}") from None
        api = client.CoreV1Api()
    body = {
        "metadata": {
            "annotations": {ANNOTATION_GPU_TOPOLOGY: json.dumps(doc, separators=(",", ":"))}
        }
    }
    try:
        api.patch_node(node_name, body)
    except client.ApiException as exc:
        raise DiscoveryError(
            f"cannot annotate node {node_name!r}: {exc.status} {exc.reason}"
        ) from None


# ---------------------------------------------------------------------------- document -> node
def node_from_discovery(
    doc: object,
    name: str,
    cpu_milli: int,
    memory_mib: int,
    costs: LinkCosts | None = None,
) -> Node:
    """The node a discovery document describes. Raises :class:`DiscoveryDocumentError` naming
    every bad field."""
    problems = Problems()
    parsed = _read_document(doc, problems)
    if problems or parsed is None:
        raise DiscoveryDocumentError([str(p) for p in problems.items])
    gpus, pcie_level, p2p, nics = parsed
    n = len(gpus)
    nvlink, generation, nvlink_group = _nvlink_layout(gpus)
    pcie_switch = _components(n, lambda a, b: pcie_level[a][b] <= PCIE_SAME_SWITCH)
    rail_nics = [k for k, nic in enumerate(nics) if min(nic["gpu_pcie_level"]) <= PCIE_SAME_SWITCH]
    compute_nics = rail_nics or list(range(len(nics)))
    rail_of_nic = {k: r for r, k in enumerate(compute_nics)}
    model_gpus = tuple(
        Gpu(
            g,
            gpu["uuid"],
            gpu["product"],
            gpu["memory_mib"],
            numa_node=gpu["numa_node"],
            pcie_switch=pcie_switch[g],
            nvlink_group=nvlink_group[g],
            rail=_rail(g, nics, rail_nics, rail_of_nic),
            mig_enabled=gpu["mig_enabled"],
        )
        for g, gpu in enumerate(gpus)
    )
    model_nics = tuple(
        Nic(
            nics[k]["name"],
            nics[k]["line_rate_gbit_s"],
            numa_node=nics[k]["numa_node"],
            rail=rail_of_nic[k],
        )
        for k in compute_nics
    )
    generations = [g["pcie_generation"] for g in gpus if g["pcie_generation"] is not None]
    low, high = PCIE_GENERATION_RANGE
    node = Node(
        name,
        model_gpus,
        cpu_milli=cpu_milli,
        memory_mib=memory_mib,
        nvlink=nvlink,
        nvlink_generation=generation,
        pcie_generation=min(max(min(generations, default=low), low), high),
        p2p_supported=all(all(row) for row in p2p),
        nics=model_nics,
        costs=costs or LinkCosts(),
    )
    rate = sum(nic.line_rate_gbit_s for nic in model_nics)
    if rate > 0:
        node = dataclasses.replace(node, network_gbps_per_gpu=rate / 8 / n)
    return node


def _rail(
    g: int, nics: list[dict[str, Any]], rail_nics: list[int], rail_of_nic: dict[int, int]
) -> int:
    """The rail of the nearest NIC behind the GPU's own PCIe switch, -1 if none is."""
    near = [(nics[k]["gpu_pcie_level"][g], k) for k in rail_nics]
    near = [(level, k) for level, k in near if level <= PCIE_SAME_SWITCH]
    return rail_of_nic[min(near)[1]] if near else -1


def _nvlink_layout(gpus: list[dict[str, Any]]) -> tuple[NvlinkKind, int, list[int]]:
    """NVSwitch when GPUs have links into switches; otherwise GPUs joined by direct links
    (bridges, meshes) form groups; otherwise PCIe only."""
    n = len(gpus)
    switched = [g for g in range(n) if gpus[g]["nvlink"]["switch_links"] > 0]
    if switched:
        generation = min(gpus[g]["nvlink"]["generation"] for g in switched)
        group = [0 if g in switched else -1 for g in range(n)]
        if generation < OLDEST_NVSWITCH_GENERATION:
            return NvlinkKind.BRIDGE, OLDEST_NVSWITCH_GENERATION, group
        return NvlinkKind.NVSWITCH, min(generation, NEWEST_NVSWITCH_GENERATION), group
    linked = [set(int(p) for p in gpu["nvlink"]["gpu_links"]) for gpu in gpus]
    if not any(linked):
        return NvlinkKind.NONE, OLDEST_NVSWITCH_GENERATION, [-1] * n
    components = _components(n, lambda a, b: b in linked[a] or a in linked[b])
    sizes = {c: components.count(c) for c in components}
    ids: dict[int, int] = {}
    group = []
    for c in components:
        if sizes[c] > 1:
            ids.setdefault(c, len(ids))
        group.append(ids.get(c, -1))
    return NvlinkKind.BRIDGE, OLDEST_NVSWITCH_GENERATION, group


def _components(n: int, joined: Any) -> list[int]:
    """Connected components of ``range(n)`` under ``joined(a, b)``, numbered in order of
    their lowest member."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a in range(n):
        for b in range(a + 1, n):
            if joined(a, b):
                parent[find(b)] = find(a)
    roots: dict[int, int] = {}
    return [roots.setdefault(find(x), len(roots)) for x in range(n)]


# ---------------------------------------------------------------------------- validation
def _read_document(
    doc: object, problems: Problems
) -> tuple[list[dict[str, Any]], list[list[int]], list[list[bool]], list[dict[str, Any]]] | None:
    root = Reader.of(doc, "", problems)
    if root is None:
        return None
    if root.string("kind") not in (None, DOCUMENT_KIND):
        problems.add("kind", f"must be {DOCUMENT_KIND!r}")
    version = root.integer("schema_version")
    if version is not None and version != SCHEMA_VERSION:
        problems.add("schema_version", f"{version} is not supported; expected {SCHEMA_VERSION}")
    raw_gpus = root.items("gpus") or []
    if not raw_gpus and root.has("gpus"):
        problems.add("gpus", "lists no GPUs")
    if len(raw_gpus) > MAX_GPUS_PER_NODE:
        problems.add("gpus", f"at most {MAX_GPUS_PER_NODE} GPUs per node")
        return None
    gpus = [
        _read_gpu(Reader.of(g, join("gpus", i), problems), i, len(raw_gpus))
        for i, g in enumerate(raw_gpus)
    ]
    n = len(raw_gpus)
    pcie_level = _read_matrix(root, "pcie_level", n, _is_pcie_level, "an NVML_TOPOLOGY_* level")
    p2p = _read_matrix(root, "p2p", n, lambda v: isinstance(v, bool), "true or false")
    nics = [
        _read_nic(Reader.of(x, join("nics", k), problems), n)
        for k, x in enumerate(root.items("nics", default=[]) or [])
    ]
    if problems:
        return None
    return gpus, pcie_level, p2p, nics  # type: ignore[return-value]


def _read_gpu(r: Reader | None, position: int, n: int) -> dict[str, Any] | None:
    if r is None:
        return None
    index = r.integer("index")
    if index is not None and index != position:
        r.problems.add(r.at("index"), f"GPUs must be listed in index order; expected {position}")
    gpu = {
        "index": index,
        "uuid": r.string("uuid"),
        "product": r.string("product"),
        "memory_mib": r.integer("memory_mib", minimum=0),
        "numa_node": r.integer("numa_node", minimum=0),
        "mig_enabled": r.boolean("mig_enabled", default=False),
        "pcie_generation": r.integer("pcie_generation", default=None, minimum=1),
        "clique": r.string("clique", default=None),
    }
    link = r.mapping("nvlink")
    if link is not None:
        peers = link.mapping("gpu_links", default=None)
        gpu_links: dict[str, int] = {}
        for key, count in peers.data.items() if peers else ():
            if not (isinstance(key, str) and key.isdigit() and int(key) < n) or not isinstance(
                count, int
            ):
                link.problems.add(
                    join(link.at("gpu_links"), str(key)),
                    f"must map a GPU index below {n} to a link count",
                )
            else:
                gpu_links[key] = count
        gpu["nvlink"] = {
            "generation": link.integer("generation", minimum=0),
            "switch_links": link.integer("switch_links", minimum=0),
            "gpu_links": gpu_links,
        }
    return gpu


def _read_nic(r: Reader | None, n: int) -> dict[str, Any] | None:
    if r is None:
        return None
    levels = r.items("gpu_pcie_level")
    if levels is not None and (len(levels) != n or not all(map(_is_pcie_level, levels))):
        r.problems.add(r.at("gpu_pcie_level"), f"must list one NVML_TOPOLOGY_* level per GPU ({n})")
    return {
        "name": r.string("name"),
        "numa_node": r.integer("numa_node", minimum=0),
        "line_rate_gbit_s": r.number("line_rate_gbit_s", minimum=0.0),
        "gpu_pcie_level": levels,
    }


def _is_pcie_level(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value in PCIE_LEVELS


def _read_matrix(
    root: Reader, key: str, n: int, valid: Any, expected: str
) -> list[list[Any]] | None:
    rows = root.items(key)
    if rows is None:
        return None
    if len(rows) != n or not all(isinstance(row, list) and len(row) == n for row in rows):
        root.problems.add(root.at(key), f"must be a {n}x{n} matrix (one row per GPU)")
        return None
    for a, row in enumerate(rows):
        for b, value in enumerate(row):
            if not valid(value):
                root.problems.add(f"{key}[{a}][{b}]", f"must be {expected}, got {value!r}")
                return None
            if value != rows[b][a]:
                root.problems.add(f"{key}[{a}][{b}]", f"must equal {key}[{b}][{a}] (symmetric)")
                return None
    return rows
