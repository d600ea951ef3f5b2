"""Kubernetes Node objects -> :class:`Cluster`.

A node's GPUs come from the ``phalanx.io/gpu-topology`` annotation written by
``phalanx topology discover`` when it is there, otherwise from GPU Feature Discovery labels
(``nvidia.com/gpu.product``, ``.count``, ``.memory``, MIG labels): a known product gets its
reference node shape, an unknown one a PCIe-only shape. Allocatable ``nvidia.com/gpu`` says how
many of them are usable.

Fabric levels come from topology labels through a :class:`LevelLabelSet`: GKE/Kueue
(``cloud.google.com/gce-topology-*``), EKS (``topology.k8s.aws/network-node-layer-N``), NVIDIA
Topograph, or Phalanx's own ``phalanx.io/*`` labels; ``auto`` picks the set the nodes carry.
The GFD clique label ``nvidia.com/gpu.clique`` always forms an NVLink level spanning nodes.
A level is used when at least one node carries its label; a node without it is alone in its
own domain at that level (nothing is known to be near it).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from phalanx.topology.costs import COST_NVLINK5, COST_SAME_LEAF, COST_SAME_SPINE, LinkCosts
from phalanx.topology.discovery import (
    ANNOTATION_GPU_TOPOLOGY,
    DiscoveryDocumentError,
    node_from_discovery,
)
from phalanx.topology.model import (
    CLUSTER_LEVEL,
    MAX_GPUS_PER_NODE,
    Cluster,
    FabricLevel,
    Gpu,
    Node,
    NvlinkKind,
    level_cost_is_monotone,
)
from phalanx.topology.presets import NODE_PRESETS, NodePreset

LABEL_GPU_PRODUCT = "nvidia.com/gpu.product"
LABEL_GPU_COUNT = "nvidia.com/gpu.count"
LABEL_GPU_MEMORY = "nvidia.com/gpu.memory"
LABEL_GPU_CLIQUE = "nvidia.com/gpu.clique"
LABEL_MIG_STRATEGY = "nvidia.com/mig.strategy"
MIG_STRATEGIES = ("none", "single", "mixed")
MIG_PRODUCT_MARKER = "-MIG-"
"""GFD appends ``-MIG-<profile>`` to the product under the ``single`` MIG strategy."""
RESOURCE_GPU = "nvidia.com/gpu"
RESOURCE_MIG_PREFIX = "nvidia.com/mig-"
EXCLUDING_TAINT_EFFECTS = ("NoSchedule", "NoExecute")
UNKNOWN_PRODUCT = "unknown"
"""Product of a node whose GPUs carry no ``nvidia.com/gpu.product`` label."""
FALLBACK_PCIE_GENERATION = 4
"""For a GPU node of unknown shape: the slower generation, so it never looks better than it is."""
MIB_BYTES = 1024 * 1024
MILLI = 1000
ANNOTATION_EXCERPT_CHARS = 80
ALONE_PREFIX = "~"
"""Names the domain of a node that lacks a level's label; label values cannot contain it."""

PRODUCT_SHAPES: dict[str, str] = {
    **{p.make("probe").product: name for name, p in NODE_PRESETS.items()},
    "NVIDIA-H100-SXM5-80GB": "dgx-h100",
    "NVIDIA-H200": "dgx-h100",
    "NVIDIA-A100-SXM4-40GB": "dgx-a100",
}
"""GFD product -> the node preset whose shape (NVLink, NUMA, rails) such a node has. H200 HGX
boards are H100 boards with more memory (the memory comes from the label)."""


class MalformedNodeError(ValueError):
    """A Node object whose labels, annotations or status cannot describe a node."""

    def __init__(self, node: str, field: str, value: object, problem: str) -> None:
        self.node = node
        self.field = field
        self.value = value
        shown = value if not isinstance(value, str) else _excerpt(value)
        super().__init__(f"node {node!r}: {field}={shown!r}: {problem}")


def _excerpt(text: str) -> str:
    cut = ANNOTATION_EXCERPT_CHARS
    return text if len(text) <= cut else text[:cut] + "..."


# ---------------------------------------------------------------------------- level labels
@dataclass(frozen=True)
class LevelLabel:
    """A fabric level read from one node label."""

    level: str
    label: str
    cost: float = COST_SAME_LEAF
    nvlink: bool = False


@dataclass(frozen=True)
class LevelLabelSet:
    """Which node labels hold which fabric level in one environment, finest level first."""

    name: str
    description: str
    levels: tuple[LevelLabel, ...]

    def __post_init__(self) -> None:
        names = [lvl.level for lvl in self.levels]
        if len(set(names)) != len(names):
            raise ValueError(f"label set {self.name!r}: level names repeat: {names}")
        if not level_cost_is_monotone(
            [FabricLevel(x.level, x.cost, nvlink=x.nvlink) for x in self.levels]
        ):
            raise ValueError(
                f"label set {self.name!r}: costs must not fall from finer to coarser levels "
                "and NVLink levels come first"
            )


CLIQUE = LevelLabel("clique", LABEL_GPU_CLIQUE, COST_NVLINK5, nvlink=True)
"""GFD's multi-node NVLink domain; its cost follows the nodes' NVLink generation."""

LEVEL_LABEL_SETS: dict[str, LevelLabelSet] = {
    s.name: s
    for s in (
        LevelLabelSet(
            "phalanx",
            "Phalanx labels, as the built-in presets name their levels",
            (
                CLIQUE,
                LevelLabel("rack", "phalanx.io/rack"),
                LevelLabel("su", "phalanx.io/su"),
                LevelLabel("pod", "phalanx.io/pod", COST_SAME_SPINE),
                LevelLabel("spine", "phalanx.io/spine", COST_SAME_SPINE),
                LevelLabel("core", "phalanx.io/core", COST_SAME_SPINE),
            ),
        ),
        LevelLabelSet(
            "gke",
            "GKE compact placement as Kueue TAS uses it: host < sub-block (rack) < block",
            (
                CLIQUE,
                LevelLabel("host", "cloud.google.com/gce-topology-host"),
                LevelLabel("subblock", "cloud.google.com/gce-topology-subblock"),
                LevelLabel("block", "cloud.google.com/gce-topology-block", COST_SAME_SPINE),
            ),
        ),
        LevelLabelSet(
            "aws",
            "EKS network node layers (layer-1 broadest) and the GB200 UltraServer",
            (
                CLIQUE,
                LevelLabel("ultraserver", "topology.k8s.aws/ultraserver-id", COST_NVLINK5, True),
                LevelLabel("layer-4", "topology.k8s.aws/network-node-layer-4"),
                LevelLabel("layer-3", "topology.k8s.aws/network-node-layer-3"),
                LevelLabel("layer-2", "topology.k8s.aws/network-node-layer-2", COST_SAME_SPINE),
                LevelLabel("layer-1", "topology.k8s.aws/network-node-layer-1", COST_SAME_SPINE),
            ),
        ),
        LevelLabelSet(
            "topograph",
            "NVIDIA Topograph labels network.topology.nvidia.com/*",
            (
                CLIQUE,
                LevelLabel(
                    "accelerator", "network.topology.nvidia.com/accelerator", COST_NVLINK5, True
                ),
                LevelLabel("block", "network.topology.nvidia.com/block"),
                LevelLabel("spine", "network.topology.nvidia.com/spine", COST_SAME_SPINE),
                LevelLabel("datacenter", "network.topology.nvidia.com/datacenter", COST_SAME_SPINE),
            ),
        ),
        LevelLabelSet(
            "topograph-tiers",
            "NVIDIA Topograph tier labels (tier-0 is the switch nearest the node)",
            (
                CLIQUE,
                LevelLabel("accelerator", "accelerator.topograph.run/domain", COST_NVLINK5, True),
                LevelLabel("tier-0", "fabric.topograph.run/tier-0"),
                LevelLabel("tier-1", "fabric.topograph.run/tier-1", COST_SAME_SPINE),
                LevelLabel("tier-2", "fabric.topograph.run/tier-2", COST_SAME_SPINE),
            ),
        ),
    )
}
AUTO = "auto"
HOSTNAME_LABEL = "kubernetes.io/hostname"


def level_label_set(name: str) -> LevelLabelSet:
    try:
        return LEVEL_LABEL_SETS[name]
    except KeyError:
        known = ", ".join([AUTO, *LEVEL_LABEL_SETS])
        raise KeyError(f"unknown label set {name!r}; known: {known}") from None


def level_labels_from_kueue_topology(topology: Mapping[str, Any]) -> LevelLabelSet:
    """A label set from a Kueue (or KAI) ``Topology`` object, whose ``spec.levels`` list
    ``{nodeLabel: ...}`` coarsest first; the hostname level is the node itself."""
    try:
        labels = [lvl["nodeLabel"] for lvl in topology["spec"]["levels"]]
        name = topology.get("metadata", {}).get("name", "kueue")
    except (KeyError, TypeError):
        raise ValueError("a Kueue Topology needs spec.levels[].nodeLabel") from None
    fabric = [x for x in reversed(labels) if x != HOSTNAME_LABEL]
    levels = [
        LevelLabel(label.rsplit("/", 1)[-1], label, COST_SAME_LEAF if i == 0 else COST_SAME_SPINE)
        for i, label in enumerate(fabric)
    ]
    return LevelLabelSet(str(name), f"Kueue Topology {name}", (CLIQUE, *levels))


# ---------------------------------------------------------------------------- one node
def node_from_kube(
    obj: Mapping[str, Any] | Any,
    label_set: LevelLabelSet | None = None,
    costs: LinkCosts | None = None,
) -> Node:
    """A Node object (a dict as the API serves it, or a ``kubernetes.client.V1Node``) as a
    :class:`Node`; ``domains`` holds the levels of ``label_set`` whose labels it carries."""
    data = _as_dict(obj)
    meta = data.get("metadata") or {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise MalformedNodeError("<unnamed>", "metadata.name", name, "a Node needs a name")
    labels = dict(meta.get("labels") or {})
    allocatable = (data.get("status") or {}).get("allocatable") or {}
    cpu_milli = int(_quantity(name, "status.allocatable.cpu", allocatable, "cpu") * MILLI)
    memory_mib = int(
        _quantity(name, "status.allocatable.memory", allocatable, "memory") // MIB_BYTES
    )
    strategy = labels.get(LABEL_MIG_STRATEGY, "none")
    if strategy not in MIG_STRATEGIES:
        raise MalformedNodeError(
            name,
            f"label {LABEL_MIG_STRATEGY}",
            strategy,
            f"expected one of {', '.join(MIG_STRATEGIES)}",
        )
    annotation = (meta.get("annotations") or {}).get(ANNOTATION_GPU_TOPOLOGY)
    if annotation is not None:
        node, clique = _node_from_annotation(name, annotation, cpu_milli, memory_mib, costs)
        if LABEL_GPU_CLIQUE not in labels and clique:
            labels[LABEL_GPU_CLIQUE] = clique
        if strategy == "none" and LABEL_GPU_COUNT in labels:
            count = _label_int(name, labels, LABEL_GPU_COUNT)
            if count != node.gpu_count:
                raise MalformedNodeError(
                    name,
                    f"label {LABEL_GPU_COUNT}",
                    labels[LABEL_GPU_COUNT],
                    f"annotation {ANNOTATION_GPU_TOPOLOGY} describes {node.gpu_count} GPUs",
                )
    else:
        node = _node_from_labels(name, labels, allocatable, strategy, cpu_milli, memory_mib)
        if costs is not None:
            node = dataclasses.replace(node, costs=costs)
    if strategy != "single" and RESOURCE_GPU in allocatable:
        usable = _gpu_quantity(name, allocatable)
        node = _mark_unusable(name, node, usable, _has_mig_resources(allocatable))
    domains = {}
    for lvl in label_set.levels if label_set else ():
        value = labels.get(lvl.label)
        if value:
            domains[lvl.level] = value
    return dataclasses.replace(node, labels=labels, domains=domains, taints=_taint_keys(name, data))


@functools.cache
def _api_client() -> Any:
    from kubernetes.client import ApiClient

    return ApiClient()


def _as_dict(obj: Mapping[str, Any] | Any) -> Mapping[str, Any]:
    if isinstance(obj, Mapping):
        return obj
    if hasattr(obj, "openapi_types"):
        return _api_client().sanitize_for_serialization(obj)
    raise TypeError(f"expected a Node as a dict or a kubernetes V1Node, got {type(obj).__name__}")


def _quantity(node: str, field: str, values: Mapping[str, Any], key: str) -> Decimal:
    from kubernetes.utils import parse_quantity

    if key not in values:
        raise MalformedNodeError(node, field, None, "is missing")
    try:
        return parse_quantity(values[key])
    except (ValueError, TypeError, InvalidOperation):
        raise MalformedNodeError(node, field, values[key], "not a Kubernetes quantity") from None


def _gpu_quantity(node: str, allocatable: Mapping[str, Any]) -> int:
    field = f"status.allocatable.{RESOURCE_GPU}"
    count = _quantity(node, field, allocatable, RESOURCE_GPU)
    if count < 0 or count != count.to_integral_value():
        raise MalformedNodeError(node, field, allocatable[RESOURCE_GPU], "not a whole GPU count")
    return int(count)


def _label_int(node: str, labels: Mapping[str, str], label: str) -> int:
    value = labels[label]
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise MalformedNodeError(node, f"label {label}", value, "not an integer") from None
    if number < 0:
        raise MalformedNodeError(node, f"label {label}", value, "must not be negative")
    return number


def _node_from_annotation(
    name: str, annotation: object, cpu_milli: int, memory_mib: int, costs: LinkCosts | None
) -> tuple[Node, str | None]:
    field = f"annotation {ANNOTATION_GPU_TOPOLOGY}"
    try:
        doc = json.loads(annotation) if isinstance(annotation, str) else None
    except json.JSONDecodeError as exc:
        raise MalformedNodeError(name, field, annotation, f"invalid JSON: {exc.msg}") from None
    if doc is None:
        raise MalformedNodeError(name, field, annotation, "must be a JSON string")
    try:
        node = node_from_discovery(doc, name, cpu_milli, memory_mib, costs)
    except DiscoveryDocumentError as exc:
        raise MalformedNodeError(name, field, annotation, str(exc)) from None
    cliques = {g.get("clique") for g in doc["gpus"]} - {None}
    if len(cliques) > 1:
        raise MalformedNodeError(
            name, field, annotation, f"GPUs in several cliques {sorted(cliques)}"
        )
    return node, cliques.pop() if cliques else None


def _node_from_labels(
    name: str,
    labels: Mapping[str, str],
    allocatable: Mapping[str, Any],
    strategy: str,
    cpu_milli: int,
    memory_mib: int,
) -> Node:
    """A node shaped after GFD labels: the reference shape of a known product, otherwise GPUs
    on PCIe only, each behind its own switch on one NUMA node."""
    if LABEL_GPU_COUNT in labels:
        count = _label_int(name, labels, LABEL_GPU_COUNT)
    elif RESOURCE_GPU in allocatable:
        count = _gpu_quantity(name, allocatable)
    else:
        count = 0
    if count > MAX_GPUS_PER_NODE:
        raise MalformedNodeError(
            name, f"label {LABEL_GPU_COUNT}", count, f"at most {MAX_GPUS_PER_NODE} GPUs per node"
        )
    product = labels.get(LABEL_GPU_PRODUCT) or (UNKNOWN_PRODUCT if count else "")
    memory = _label_int(name, labels, LABEL_GPU_MEMORY) if LABEL_GPU_MEMORY in labels else None
    mig_single = strategy == "single"
    base_product = product.split(MIG_PRODUCT_MARKER)[0]
    preset = _preset_for(base_product)
    if preset is not None and not mig_single:
        node = preset.make(name)
        if count <= node.gpu_count:
            gpus = node.gpus[:count]
            rails = {g.rail for g in gpus}
            return dataclasses.replace(
                node,
                gpus=tuple(
                    dataclasses.replace(g, product=product, memory_mib=memory or g.memory_mib)
                    for g in gpus
                ),
                nics=tuple(n for n in node.nics if n.rail in rails),
                cpu_milli=cpu_milli,
                memory_mib=memory_mib,
            )
    gpus = tuple(
        Gpu(g, f"GPU-{name}-{g}", product, memory or 0, pcie_switch=g, mig_enabled=mig_single)
        for g in range(count)
    )
    return Node(
        name,
        gpus,
        cpu_milli=cpu_milli,
        memory_mib=memory_mib,
        nvlink=NvlinkKind.NONE,
        pcie_generation=FALLBACK_PCIE_GENERATION,
    )


def _preset_for(product: str) -> NodePreset | None:
    preset = PRODUCT_SHAPES.get(product)
    return NODE_PRESETS[preset] if preset else None


def _has_mig_resources(allocatable: Mapping[str, Any]) -> bool:
    return any(
        key.startswith(RESOURCE_MIG_PREFIX) and str(v) != "0" for key, v in allocatable.items()
    )


def _mark_unusable(name: str, node: Node, usable: int, mig_resources: bool) -> Node:
    """Allocatable ``nvidia.com/gpu`` below the GPU count: the rest are in MIG mode (when the
    node offers MIG resources) or unhealthy. Which ones is not visible in the Node object, so
    the highest indices are marked."""
    free = [g.index for g in node.gpus if g.healthy and not g.mig_enabled]
    if usable > len(free):
        raise MalformedNodeError(
            name,
            f"status.allocatable.{RESOURCE_GPU}",
            usable,
            f"exceeds the {len(free)} usable GPUs the node has",
        )
    lost = set(free[usable:])
    if not lost:
        return node
    change = {"mig_enabled": True} if mig_resources else {"healthy": False}
    gpus = tuple(dataclasses.replace(g, **change) if g.index in lost else g for g in node.gpus)
    return dataclasses.replace(node, gpus=gpus)


def _taint_keys(name: str, data: Mapping[str, Any]) -> tuple[str, ...]:
    taints = (data.get("spec") or {}).get("taints") or []
    keys = []
    for i, taint in enumerate(taints):
        if not isinstance(taint, Mapping) or not isinstance(taint.get("key"), str):
            raise MalformedNodeError(name, f"spec.taints[{i}]", taint, "a taint needs a key")
        if taint.get("effect") in EXCLUDING_TAINT_EFFECTS:
            keys.append(taint["key"])
    return tuple(keys)


# ---------------------------------------------------------------------------- the cluster
def cluster_from_nodes(
    nodes: Iterable[Mapping[str, Any] | Any],
    label_keys: LevelLabelSet | str = AUTO,
    name: str = "kubernetes",
    costs: LinkCosts | None = None,
    errors: list[MalformedNodeError] | None = None,
    level_costs: Mapping[str, float] | None = None,
) -> Cluster:
    """The cluster that a list of Node objects describes.

    ``level_costs`` replaces the label set's cost of the named levels (Node labels say which
    domain a node is in, not how fast the links above it are: an oversubscribed spine is
    dearer than the default); names no level of the cluster has are ignored
    (:func:`known_level_names` lists every name a label set can give).

    ``label_keys`` is a :class:`LevelLabelSet`, the name of a built-in one, or ``auto`` (the
    built-in set whose labels the nodes carry most). A malformed node raises
    :class:`MalformedNodeError`; with an ``errors`` list it is left out and its error appended
    instead, so one bad node does not hide the rest of the cluster.
    """
    objects = [_as_dict(obj) for obj in nodes]
    if isinstance(label_keys, LevelLabelSet):
        label_set = label_keys
    elif label_keys == AUTO:
        label_set = _choose_label_set(objects)
    else:
        label_set = level_label_set(label_keys)
    built: list[Node] = []
    for obj in objects:
        try:
            built.append(node_from_kube(obj, label_set, costs))
        except MalformedNodeError as exc:
            if errors is None:
                raise
            errors.append(exc)
    if not built:
        raise ValueError("no usable Node objects to build a cluster from")
    return Cluster(name, built, _levels(label_set, built, level_costs or {}))


def _choose_label_set(objects: list[Mapping[str, Any]]) -> LevelLabelSet:
    carried: set[str] = set()
    for obj in objects:
        carried.update(((obj.get("metadata") or {}).get("labels") or {}).keys())

    def score(s: LevelLabelSet) -> int:
        return sum(lvl.label in carried for lvl in s.levels if lvl is not CLIQUE)

    best = max(LEVEL_LABEL_SETS.values(), key=score)
    return best if score(best) else LevelLabelSet("gfd", "only GFD cliques", (CLIQUE,))


def known_level_names() -> set[str]:
    """Every fabric level name a built-in label set can give a cluster built from Nodes."""
    names = {lvl.level for label_set in LEVEL_LABEL_SETS.values() for lvl in label_set.levels}
    return names | {CLUSTER_LEVEL}


def _levels(
    label_set: LevelLabelSet, nodes: list[Node], level_costs: Mapping[str, float]
) -> list[FabricLevel]:
    """The label set's levels that some node carries; nodes without one are alone at it. A
    coarser level never costs less than a finer one."""
    levels: list[FabricLevel] = []
    for lvl in label_set.levels:
        carriers = [n for n in nodes if lvl.level in n.domains]
        if not carriers:
            continue
        cost = _nvlink_cost(lvl.cost, carriers) if lvl.nvlink else lvl.cost
        cost = float(level_costs.get(lvl.level, cost))
        floor = levels[-1].cost if levels else cost
        levels.append(FabricLevel(lvl.level, max(cost, floor), nvlink=lvl.nvlink, label=lvl.label))
        for n in nodes:
            n.domains.setdefault(lvl.level, f"{ALONE_PREFIX}{n.name}")
    if not any(not lvl.nvlink for lvl in levels) and len(nodes) > 1:
        levels.append(FabricLevel(CLUSTER_LEVEL, level_costs.get(CLUSTER_LEVEL, COST_SAME_SPINE)))
        for n in nodes:
            n.domains[CLUSTER_LEVEL] = CLUSTER_LEVEL
    return levels


def _nvlink_cost(default: float, nodes: list[Node]) -> float:
    """The slowest NVSwitch generation among the domain's nodes (a GB200 clique is NVLink5)."""
    costs = [
        n.costs.nvswitch(n.nvlink_generation) for n in nodes if n.nvlink is NvlinkKind.NVSWITCH
    ]
    return max(costs) if costs else default
