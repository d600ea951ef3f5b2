""":class:`Cluster` -> Kubernetes Node objects, the inverse of :mod:`topology.kube`.

Tests and demos need a cluster's Node objects in a real (or fake) API server, and the
extender needs to see exactly the cluster the simulator and ``phalanx place`` see. So each node
is written in the form :func:`topology.kube.cluster_from_nodes` reads best: its intra-node
topology as the ``phalanx.io/gpu-topology`` discovery document (what ``phalanx topology
discover`` publishes), GPU Feature Discovery labels for everything else that looks at GPUs, and
its fabric domains as the labels of one :class:`~topology.kube.LevelLabelSet` (Phalanx's own
by default). Loading the result back gives the same nodes, GPUs, links, NUMA nodes, rails,
levels and domains; what Node objects cannot hold (level costs and link costs other than the
label set's defaults, a scale-out bandwidth that the NICs do not add up to) is found by
:func:`round_trip_differences`, which loads the list back and compares.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import yaml
from phalanx.topology.costs import LinkCosts
from phalanx.topology.discovery import (
    ANNOTATION_GPU_TOPOLOGY,
    DOCUMENT_KIND,
    PCIE_CROSS_SOCKET,
    PCIE_SAME_BOARD,
    PCIE_SAME_NUMA,
    PCIE_SAME_SWITCH,
    SCHEMA_VERSION,
)
from phalanx.topology.kube import (
    ALONE_PREFIX,
    AUTO,
    HOSTNAME_LABEL,
    LABEL_GPU_CLIQUE,
    LABEL_GPU_COUNT,
    LABEL_GPU_MEMORY,
    LABEL_GPU_PRODUCT,
    LABEL_MIG_STRATEGY,
    RESOURCE_GPU,
    LevelLabel,
    LevelLabelSet,
    cluster_from_nodes,
    level_label_set,
)
from phalanx.topology.model import CLUSTER_LEVEL, Cluster, FabricLevel, Gpu, Node, NvlinkKind

DEFAULT_LABEL_SET = "phalanx"
LABEL_GPU_FAMILY = "nvidia.com/gpu.family"
LABEL_GPU_PRESENT = "nvidia.com/gpu.present"
LABEL_OS = "kubernetes.io/os"
GPU_FAMILIES = (
    (("GB200", "B200", "B100"), "blackwell"),
    (("H100", "H200"), "hopper"),
    (("L40", "L4"), "ada-lovelace"),
    (("A100", "A30", "A40", "A10"), "ampere"),
)
"""GFD's ``nvidia.com/gpu.family`` by product substring; the first match wins."""
DEFAULT_CPU_MILLI = 64_000
DEFAULT_MEMORY_MIB = 256 * 1024
"""For a node whose model has no CPU or memory (0): a real API server needs some, and a pod
asks for both, so a node without them could take nothing."""
DEFAULT_MAX_PODS = 110
"""The kubelet's default ``maxPods``."""
NVSWITCH_LINKS = {3: 12, 4: 18, 5: 18}
"""NVLinks from each GPU into the NVSwitches (A100, H100, Blackwell); discovery counts them."""
BRIDGE_LINKS = 4
MILLI = 1000
MIB_PER_GIB = 1024
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME_CHARS = 63
DNS_SUBDOMAIN_CHARS = 253


class ExportError(ValueError):
    """A cluster that cannot be written as Node objects an API server accepts, or whose levels
    the chosen label set cannot name."""


# ---------------------------------------------------------------------------- the list
def node_list(cluster: Cluster, label_set: LevelLabelSet | str = DEFAULT_LABEL_SET) -> dict:
    """The cluster as a ``v1`` ``NodeList``: one Node per node, in cluster order.

    Metadata holds only fields a client may set (no uid, resourceVersion or timestamps), so
    the items can be created as they are; status is complete, to be written through the
    status subresource. Raises :class:`ExportError` for a level the label set has no label
    for, or a name or label value Kubernetes would refuse.
    """
    labels = level_label_set(label_set) if isinstance(label_set, str) else label_set
    mapping = _level_labels(cluster.levels, labels)
    written = {lvl.label for lvl in labels.levels}
    return {
        "apiVersion": "v1",
        "kind": "NodeList",
        "metadata": {},
        "items": [node_object(node, mapping, written) for node in cluster.nodes],
    }


def _level_labels(levels: list[FabricLevel], label_set: LevelLabelSet) -> dict[str, str]:
    """Model level name -> the label that holds it: matched by the level's own label, then by
    name; a lone multi-node NVLink level takes the set's NVLink level. The loader orders levels
    as the set does, so the matches must keep the cluster's order. The one-domain root that
    every cluster gets is left out: the loader adds it back."""
    chosen: dict[str, str] = {}
    last = -1
    nvlink_levels = [x for x in label_set.levels if x.nvlink]
    for lvl in levels:
        if lvl.name == CLUSTER_LEVEL and lvl is levels[-1]:
            continue
        match = _match(lvl, label_set.levels, nvlink_levels)
        if match is None:
            known = ", ".join(f"{x.level} ({x.label})" for x in label_set.levels)
            raise ExportError(
                f"level {lvl.name!r} has no label in the {label_set.name!r} label set; "
                f"name the level (or give it the label) of one of: {known}; "
                "or write another label set"
            )
        position = label_set.levels.index(match)
        if position <= last:
            order = " < ".join(x.level for x in label_set.levels)
            raise ExportError(
                f"level {lvl.name!r} is out of the {label_set.name!r} label set's order {order}"
            )
        last = position
        chosen[lvl.name] = match.label
    return chosen


def _match(
    lvl: FabricLevel, choices: tuple[LevelLabel, ...], nvlink_levels: list[LevelLabel]
) -> LevelLabel | None:
    same_kind = [x for x in choices if x.nvlink == lvl.nvlink]
    for x in same_kind:
        if lvl.label and x.label == lvl.label:
            return x
    for x in same_kind:
        if x.level == lvl.name:
            return x
    if lvl.nvlink and len(nvlink_levels) == 1:
        return nvlink_levels[0]
    return None


# ---------------------------------------------------------------------------- one node
def node_object(
    node: Node, level_labels: Mapping[str, str], fabric_labels: set[str] | None = None
) -> dict:
    """One ``v1`` Node: its model labels, then GFD and hostname labels, then one fabric label
    per level in ``level_labels`` (level name -> label). Labels in ``fabric_labels`` that are
    no level's are dropped from the model's own, so the loader does not find levels the
    cluster does not have."""
    _check_name(node.name)
    stale = (fabric_labels or set()) - set(level_labels.values())
    labels = {k: v for k, v in node.labels.items() if k not in stale}
    labels.update({HOSTNAME_LABEL: node.name, LABEL_OS: "linux"})
    labels.update(gfd_labels(node))
    clique = None
    for level, label in level_labels.items():
        labels.pop(label, None)
        domain = node.domains.get(level, "")
        if domain and not domain.startswith(ALONE_PREFIX):
            labels[label] = domain
            if label == LABEL_GPU_CLIQUE:
                clique = domain
    for key, value in labels.items():
        _check_label(node.name, key, value)
    meta: dict[str, Any] = {"name": node.name, "labels": labels}
    if node.gpus:
        doc = gpu_topology_document(node, clique)
        meta["annotations"] = {ANNOTATION_GPU_TOPOLOGY: json.dumps(doc, separators=(",", ":"))}
    spec: dict[str, Any] = {}
    if node.taints:
        spec["taints"] = [{"key": key, "effect": "NoSchedule"} for key in node.taints]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": meta,
        "spec": spec,
        "status": node_status(node),
    }


def gfd_labels(node: Node) -> dict[str, str]:
    """The labels GPU Feature Discovery (and the GPU operator) would put on the node; none for
    a CPU-only node."""
    if not node.gpus:
        return {}
    product = node.product
    labels = {
        LABEL_GPU_PRESENT: "true",
        LABEL_GPU_PRODUCT: product,
        LABEL_GPU_COUNT: str(node.gpu_count),
        LABEL_GPU_MEMORY: str(node.gpus[0].memory_mib),
        LABEL_MIG_STRATEGY: "mixed" if any(g.mig_enabled for g in node.gpus) else "none",
    }
    family = next((f for keys, f in GPU_FAMILIES if any(k in product for k in keys)), None)
    if family:
        labels[LABEL_GPU_FAMILY] = family
    return labels


def node_status(node: Node) -> dict:
    """Capacity and allocatable (the model's CPU and memory are what pods may use, so both
    get them), a Ready condition and the hostname address. ``nvidia.com/gpu`` counts the GPUs
    not in MIG mode; allocatable leaves out the unhealthy ones, which the loader marks from
    the highest index down."""
    cpu = node.cpu_milli if node.cpu_milli > 0 else DEFAULT_CPU_MILLI
    memory = node.memory_mib if node.memory_mib > 0 else DEFAULT_MEMORY_MIB
    common = {
        "cpu": cpu_quantity(cpu),
        "memory": memory_quantity(memory),
        "pods": str(DEFAULT_MAX_PODS),
    }
    capacity, allocatable = dict(common), dict(common)
    if node.gpus:
        whole = [g for g in node.gpus if not g.mig_enabled]
        capacity[RESOURCE_GPU] = str(len(whole))
        allocatable[RESOURCE_GPU] = str(sum(g.healthy for g in whole))
    return {
        "capacity": capacity,
        "allocatable": allocatable,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "exported by phalanx topology export",
            }
        ],
        "addresses": [{"type": "Hostname", "address": node.name}],
    }


def cpu_quantity(milli: int) -> str:
    """``224000`` -> ``"224"``, ``223500`` -> ``"223500m"``: exact, as the loader reads it."""
    return str(milli // MILLI) if milli % MILLI == 0 else f"{milli}m"


def memory_quantity(mib: int) -> str:
    """``2097152`` -> ``"2048Gi"``, ``46068`` -> ``"46068Mi"``."""
    return f"{mib // MIB_PER_GIB}Gi" if mib % MIB_PER_GIB == 0 else f"{mib}Mi"


def gpu_topology_document(node: Node, clique: str | None = None) -> dict:
    """The discovery document (``topology/discovery.py``) that ``node_from_discovery`` turns
    back into this node's GPUs, links, PCIe switches, NUMA nodes and rails. PCIe levels encode
    the model's switches (same switch: PXB, same NUMA node: NODE, else SYS); a NIC is at PXB
    from the GPUs of its rail, which is how discovery finds rails."""
    gpus = node.gpus
    switched = node.nvlink is NvlinkKind.NVSWITCH
    generation = node.nvlink_generation
    docs = []
    for g in gpus:
        peers = {}
        if node.nvlink is NvlinkKind.BRIDGE and g.nvlink_group >= 0:
            peers = {
                str(p.index): BRIDGE_LINKS
                for p in gpus
                if p.index != g.index and p.nvlink_group == g.nvlink_group
            }
        in_switch = switched and g.nvlink_group >= 0
        docs.append(
            {
                "index": g.index,
                "uuid": g.uuid,
                "product": g.product,
                "memory_mib": g.memory_mib,
                "numa_node": g.numa_node,
                "mig_enabled": g.mig_enabled,
                "pcie_generation": node.pcie_generation,
                "clique": clique,
                "nvlink": {
                    "generation": generation if (in_switch or peers) else 0,
                    "switch_links": NVSWITCH_LINKS.get(generation, 18) if in_switch else 0,
                    "gpu_links": peers,
                },
            }
        )
    return {
        "kind": DOCUMENT_KIND,
        "schema_version": SCHEMA_VERSION,
        "gpus": docs,
        "pcie_level": [[_pcie_level(a, b) for b in gpus] for a in gpus],
        "p2p": [[node.p2p_supported for _ in gpus] for _ in gpus],
        "nics": [
            {
                "name": nic.name,
                "numa_node": nic.numa_node,
                "line_rate_gbit_s": nic.line_rate_gbit_s,
                "gpu_pcie_level": [
                    PCIE_SAME_SWITCH
                    if g.rail == nic.rail
                    else PCIE_SAME_NUMA
                    if g.numa_node == nic.numa_node
                    else PCIE_CROSS_SOCKET
                    for g in gpus
                ],
            }
            for nic in sorted(node.nics, key=lambda n: n.rail)
        ],
    }


def _pcie_level(a: Gpu, b: Gpu) -> int:
    if a.index == b.index:
        return PCIE_SAME_BOARD
    if a.pcie_switch == b.pcie_switch:
        return PCIE_SAME_SWITCH
    return PCIE_SAME_NUMA if a.numa_node == b.numa_node else PCIE_CROSS_SOCKET


def _check_name(name: str) -> None:
    if len(name) > LABEL_NAME_CHARS or not _DNS_SUBDOMAIN.match(name):
        raise ExportError(
            f"node name {name!r} is not a Kubernetes node name that can also be its "
            f"{HOSTNAME_LABEL} label (lower-case letters, digits, '-' and '.', "
            f"at most {LABEL_NAME_CHARS} characters)"
        )


def _check_label(node: str, key: str, value: str) -> None:
    prefix, _, name = key.rpartition("/")
    if (
        not name
        or len(name) > LABEL_NAME_CHARS
        or not _LABEL_NAME.match(name)
        or len(prefix) > DNS_SUBDOMAIN_CHARS
        or (prefix and not _DNS_SUBDOMAIN.match(prefix))
    ):
        raise ExportError(f"node {node!r}: {key!r} is not a valid Kubernetes label key")
    if len(value) > LABEL_NAME_CHARS or not _LABEL_NAME.match(value):
        raise ExportError(
            f"node {node!r}: label {key}={value!r} is not a valid Kubernetes label value "
            f"(letters, digits, '-', '_' and '.', at most {LABEL_NAME_CHARS} characters)"
        )


# ---------------------------------------------------------------------------- output
def dump_node_list(doc: Mapping[str, Any], fmt: str = "json") -> str:
    """``json`` (indented, as ``kubectl get nodes -o json``) or ``yaml``."""
    if fmt == "yaml":
        return yaml.safe_dump(dict(doc), sort_keys=False, default_flow_style=False)
    return json.dumps(doc, indent=2) + "\n"


def round_trip_differences(cluster: Cluster, doc: Mapping[str, Any]) -> list[str]:
    """What loading ``doc`` back (as ``phalanx topology show`` and ``phalanx serve`` do, with
    the label set picked automatically) changes, one line per kind of change; empty when the
    placement arrays are the same. Level costs and link-cost overrides live in cluster files,
    not in Node objects, so they are the usual entries here."""
    before = cluster.compile()
    after = cluster_from_nodes(doc["items"], AUTO, name=cluster.name).compile()
    if before.level_names != after.level_names:
        return [f"levels {before.level_names} load back as {after.level_names}"]
    out = []
    for name, a, b in zip(
        before.level_names[1:], before.level_cost[1:], after.level_cost[1:], strict=True
    ):
        if a != b:
            out.append(f"level {name!r} costs {a:g} here, {b:g} loaded back (label-set default)")
    if any(n.costs != LinkCosts() for n in cluster.nodes):
        out.append("link-cost overrides are not carried by Node objects (defaults load back)")
    checks = {
        "node domains": (before.domain_names, after.domain_names),
        "GPU pair costs": (
            before.shape_pair_cost[before.node_shape],
            after.shape_pair_cost[after.node_shape],
        ),
        "scale-out (egress) costs": (before.node_egress_cost, after.node_egress_cost),
        "GPU rails": (before.gpu_rail, after.gpu_rail),
        "GPU NUMA nodes": (before.gpu_numa, after.gpu_numa),
        "usable GPUs": (before.gpu_usable, after.gpu_usable),
        "CPU capacity": (before.cpu_capacity_milli, after.cpu_capacity_milli),
        "memory capacity": (before.memory_capacity_mib, after.memory_capacity_mib),
    }
    for what, (a, b) in checks.items():
        if not np.array_equal(np.asarray(a), np.asarray(b)):
            out.append(f"{what} differ after loading back")
    return out
