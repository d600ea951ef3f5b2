"""Kubernetes Node objects as a topology source: labels, allocatable, annotation, label sets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from kubernetes.client import V1Node, V1NodeSpec, V1NodeStatus, V1ObjectMeta, V1Taint
from phalanx.topology.discovery import ANNOTATION_GPU_TOPOLOGY, discover
from phalanx.topology.kube import (
    LEVEL_LABEL_SETS,
    LevelLabel,
    LevelLabelSet,
    MalformedNodeError,
    cluster_from_nodes,
    level_labels_from_kueue_topology,
    node_from_kube,
)
from phalanx.topology.model import Node, NvlinkKind
from phalanx.topology.nvml_backend import RecordedBackend
from phalanx.topology.presets import cluster_preset

from tests.topology_strategies import as_kube, gfd_labels, kube_node

FIXTURES = Path(__file__).resolve().parents[1] / "topology" / "fixtures"
CLIQUE_UUID = "7b968a6d-c8aa-45e1-9e07-e1e51be99c31"


def dgx_document() -> dict:
    return discover(RecordedBackend.load(FIXTURES / "nvml-dgx-h100.json"))


# ---------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("spec", ["superpod-h100:64", "nvl72:72", "dgx-a100:20", "dgx-h100:600"])
def test_labelled_preset_nodes_give_back_the_preset_topology(spec):
    original = cluster_preset(spec).compile()
    rebuilt = cluster_from_nodes(as_kube(original.cluster)).compile()
    assert rebuilt.level_names == original.level_names
    assert np.array_equal(rebuilt.level_cost[1:], original.level_cost[1:])
    assert np.array_equal(rebuilt.node_domain, original.node_domain)
    assert np.array_equal(rebuilt.shape_pair_cost, original.shape_pair_cost)
    assert np.array_equal(rebuilt.node_egress_cost, original.node_egress_cost)
    assert np.array_equal(rebuilt.level_is_nvlink, original.level_is_nvlink)


def test_kubernetes_client_models_are_accepted():
    node = V1Node(
        metadata=V1ObjectMeta(name="gpu-1", labels=gfd_labels()),
        spec=V1NodeSpec(taints=[V1Taint(key="dedicated", effect="NoSchedule", value="ml")]),
        status=V1NodeStatus(allocatable={"cpu": "223500m", "memory": "2Ti", "nvidia.com/gpu": "8"}),
    )
    built = node_from_kube(node)
    assert built.name == "gpu-1"
    assert built.cpu_milli == 223_500
    assert built.memory_mib == 2 * 1024 * 1024
    assert built.taints == ("dedicated",)
    assert built.nvlink is NvlinkKind.NVSWITCH


# ---------------------------------------------------------------------------- node shapes
def test_annotation_describes_the_node_exactly():
    doc = dgx_document()
    obj = kube_node("dgx-1", gfd_labels(), annotations={ANNOTATION_GPU_TOPOLOGY: json.dumps(doc)})
    node = node_from_kube(obj)
    assert [g.uuid for g in node.gpus] == [g["uuid"] for g in doc["gpus"]]
    assert node.nvlink is NvlinkKind.NVSWITCH
    assert node.network_gbps_per_gpu == 50.0
    assert node.cpu_milli == 64_000


def test_annotation_clique_joins_nodes_without_the_gfd_label():
    doc = dgx_document()
    for gpu in doc["gpus"]:
        gpu["clique"] = f"{CLIQUE_UUID}.3"
    annotated = {ANNOTATION_GPU_TOPOLOGY: json.dumps(doc)}
    cluster = cluster_from_nodes(
        [kube_node(f"n{i}", gfd_labels(), annotations=annotated) for i in range(2)]
    )
    assert [lvl.name for lvl in cluster.levels] == ["clique", "cluster"]
    assert cluster.levels[0].nvlink and cluster.levels[0].cost == 1.0, "NVLink4 nodes"
    assert cluster.compile().inter_node_cost(0, 1) == 1.0


def test_gfd_clique_label_forms_an_nvlink_level_across_nodes():
    nodes = [
        kube_node(
            f"t{i}",
            {
                **gfd_labels("NVIDIA-GB200", 4, 189471),
                "nvidia.com/gpu.clique": f"{CLIQUE_UUID}.{i // 2}",
            },
            4,
        )
        for i in range(4)
    ]
    compiled = cluster_from_nodes(nodes).compile()
    assert compiled.level_names == ["node", "clique", "cluster"]
    assert compiled.inter_node_cost(0, 1) == 0.5
    assert compiled.inter_node_cost(0, 2) >= 10.0, "another clique is over the network"


def test_known_product_with_fewer_gpus_keeps_its_nvswitch_shape():
    node = node_from_kube(kube_node("a3-4g", gfd_labels(count=4), 4))
    assert node.gpu_count == 4
    assert node.nvlink is NvlinkKind.NVSWITCH
    assert len(node.nics) == 4
    assert {g.memory_mib for g in node.gpus} == {81559}


def test_h200_uses_the_hgx_shape_with_its_own_memory():
    node = node_from_kube(kube_node("h200", gfd_labels("NVIDIA-H200", 8, 143771)))
    assert node.nvlink is NvlinkKind.NVSWITCH and node.product == "NVIDIA-H200"
    assert node.gpus[0].memory_mib == 143771


def test_unknown_product_gets_a_pcie_only_shape():
    node = node_from_kube(kube_node("odd", gfd_labels("NVIDIA-RTX-PRO-6000", 2, 97887), 2))
    assert node.nvlink is NvlinkKind.NONE
    assert node.gpu_count == 2 and node.product == "NVIDIA-RTX-PRO-6000"
    assert node.pair_cost()[0, 1] == 15.0 * 1.25


def test_nodes_without_gfd_labels_count_allocatable_gpus():
    node = node_from_kube(kube_node("plain", {}, 2))
    assert node.gpu_count == 2 and node.product == "unknown"
    cpu_only = node_from_kube(kube_node("cpu", {}, None))
    assert cpu_only.gpu_count == 0 and cpu_only.product == ""


def test_allocatable_below_the_count_marks_gpus_unusable():
    sick = node_from_kube(kube_node("sick", gfd_labels(), 6))
    assert [g.healthy for g in sick.gpus] == [True] * 6 + [False] * 2
    mixed = node_from_kube(
        kube_node(
            "mixed",
            {**gfd_labels(), "nvidia.com/mig.strategy": "mixed"},
            7,
            extra_allocatable={"nvidia.com/mig-1g.10gb": "7"},
        )
    )
    assert [g.mig_enabled for g in mixed.gpus] == [False] * 7 + [True]
    assert all(g.healthy for g in mixed.gpus)


def test_single_mig_strategy_makes_every_device_a_mig_slice():
    labels = {
        **gfd_labels("NVIDIA-A100-SXM4-40GB-MIG-1g.5gb", 56, 4864),
        "nvidia.com/mig.strategy": "single",
    }
    node = node_from_kube(kube_node("mig", labels, 56))
    assert node.gpu_count == 56
    assert all(g.mig_enabled for g in node.gpus)
    assert cluster_from_nodes([kube_node("mig", labels, 56)]).compile().gpu_usable.sum() == 0


def test_only_excluding_taints_are_kept():
    taints = [
        {"key": "a", "effect": "NoSchedule"},
        {"key": "b", "effect": "PreferNoSchedule"},
        {"key": "c", "effect": "NoExecute"},
    ]
    assert node_from_kube(kube_node("t", gfd_labels(), taints=taints)).taints == ("a", "c")


# ---------------------------------------------------------------------------- label sets
def test_gke_labels_are_found_automatically():
    nodes = [
        kube_node(
            f"gke-{i}",
            {
                **gfd_labels(),
                "cloud.google.com/gce-topology-block": f"b{i // 4}",
                "cloud.google.com/gce-topology-subblock": f"s{i // 2 % 2}",
                "cloud.google.com/gce-topology-host": f"h{i}",
            },
        )
        for i in range(8)
    ]
    compiled = cluster_from_nodes(nodes).compile()
    assert compiled.level_names == ["node", "host", "subblock", "block", "cluster"]
    subblock = compiled.level_index("subblock")
    assert len(set(compiled.node_domain[subblock].tolist())) == 4, "names repeat across blocks"
    assert compiled.inter_node_cost(0, 1) == 10.0
    assert compiled.inter_node_cost(0, 2) == 11.0


def test_aws_layers_skip_the_layer_no_node_has():
    nodes = [
        kube_node(
            f"ip-{i}",
            {
                **gfd_labels(),
                "topology.k8s.aws/network-node-layer-1": "nn-top",
                "topology.k8s.aws/network-node-layer-2": f"nn-mid{i // 4}",
                "topology.k8s.aws/network-node-layer-3": f"nn-low{i // 2}",
            },
        )
        for i in range(8)
    ]
    cluster = cluster_from_nodes(nodes)
    assert [lvl.name for lvl in cluster.levels] == ["layer-3", "layer-2", "layer-1"]
    assert cluster.levels[0].label == "topology.k8s.aws/network-node-layer-3"


def test_topograph_labels_and_a_node_missing_one():
    labels = [
        {"network.topology.nvidia.com/block": "s1", "network.topology.nvidia.com/spine": "s2"},
        {"network.topology.nvidia.com/block": "s1", "network.topology.nvidia.com/spine": "s2"},
        {"network.topology.nvidia.com/spine": "s2"},
    ]
    nodes = [kube_node(f"n{i}", {**gfd_labels(), **lab}) for i, lab in enumerate(labels)]
    compiled = cluster_from_nodes(nodes).compile()
    assert compiled.level_names == ["node", "block", "spine"]
    assert compiled.lowest_common_level(0, 1) == 1
    assert compiled.lowest_common_level(0, 2) == 2, "a node without a block label is alone"


def test_a_kueue_topology_object_becomes_a_label_set():
    topology = {
        "metadata": {"name": "default"},
        "spec": {
            "levels": [
                {"nodeLabel": "cloud.provider.com/topology-block"},
                {"nodeLabel": "cloud.provider.com/topology-rack"},
                {"nodeLabel": "kubernetes.io/hostname"},
            ]
        },
    }
    label_set = level_labels_from_kueue_topology(topology)
    assert [lvl.level for lvl in label_set.levels] == ["clique", "topology-rack", "topology-block"]
    nodes = [
        kube_node(
            f"n{i}",
            {
                **gfd_labels(),
                "cloud.provider.com/topology-block": "b1",
                "cloud.provider.com/topology-rack": f"r{i}",
            },
        )
        for i in range(2)
    ]
    assert cluster_from_nodes(nodes, label_set).compile().inter_node_cost(0, 1) == 11.0
    with pytest.raises(ValueError, match=r"spec\.levels"):
        level_labels_from_kueue_topology({"spec": {}})


def test_no_topology_labels_means_one_flat_network():
    cluster = cluster_from_nodes([kube_node(f"n{i}", gfd_labels()) for i in range(3)])
    assert [(lvl.name, lvl.cost) for lvl in cluster.levels] == [("cluster", 11.0)]


def test_label_sets_by_name_and_their_checks():
    nodes = [kube_node("n0", {**gfd_labels(), "phalanx.io/su": "su0"})]
    assert cluster_from_nodes(nodes, "phalanx").levels[0].name == "su"
    with pytest.raises(KeyError, match="known: auto, phalanx"):
        cluster_from_nodes(nodes, "nope")
    with pytest.raises(ValueError, match="costs must not fall"):
        LevelLabelSet("x", "", (LevelLabel("a", "a", 20.0), LevelLabel("b", "b", 10.0)))
    assert set(LEVEL_LABEL_SETS) >= {"phalanx", "gke", "aws", "topograph", "topograph-tiers"}


# ---------------------------------------------------------------------------- malformed nodes
@pytest.mark.parametrize(
    ("obj", "field", "value"),
    [
        (
            kube_node("n", {**gfd_labels(), "nvidia.com/gpu.count": "eight"}),
            "label nvidia.com/gpu.count",
            "eight",
        ),
        (
            kube_node("n", {**gfd_labels(), "nvidia.com/gpu.memory": "-5"}),
            "label nvidia.com/gpu.memory",
            "-5",
        ),
        (kube_node("n", gfd_labels(), gpus="lots"), "status.allocatable.nvidia.com/gpu", "lots"),
        (kube_node("n", gfd_labels(), gpus=9), "status.allocatable.nvidia.com/gpu", 9),
        (kube_node("n", gfd_labels(), gpus="7.5"), "status.allocatable.nvidia.com/gpu", "7.5"),
        (kube_node("n", {}, gpus="-1"), "status.allocatable.nvidia.com/gpu", "-1"),
        (kube_node("n", gfd_labels(), cpu="fast"), "status.allocatable.cpu", "fast"),
        (
            kube_node("n", {**gfd_labels(), "nvidia.com/mig.strategy": "some"}),
            "label nvidia.com/mig.strategy",
            "some",
        ),
        (
            kube_node("n", gfd_labels(), annotations={ANNOTATION_GPU_TOPOLOGY: "{not json"}),
            f"annotation {ANNOTATION_GPU_TOPOLOGY}",
            "{not json",
        ),
        (
            kube_node("n", gfd_labels(), taints=[{"effect": "NoSchedule"}]),
            "spec.taints[0]",
            {"effect": "NoSchedule"},
        ),
        ({"metadata": {}}, "metadata.name", None),
    ],
)
def test_malformed_nodes_name_node_field_and_value(obj, field, value):
    with pytest.raises(MalformedNodeError) as info:
        node_from_kube(obj)
    assert info.value.field == field
    assert info.value.value == value
    assert field in str(info.value) and repr(value) in str(info.value)


def test_missing_allocatable_memory_is_named():
    obj = kube_node("n", gfd_labels())
    del obj["status"]["allocatable"]["memory"]
    with pytest.raises(
        MalformedNodeError, match=r"node 'n': status.allocatable.memory=None: is missing"
    ):
        node_from_kube(obj)


def test_an_annotation_that_is_not_a_discovery_document_names_the_bad_fields():
    doc = dgx_document()
    doc["gpus"][1]["memory_mib"] = "lots"
    doc["pcie_level"][0][1] = 20
    obj = kube_node("n", gfd_labels(), annotations={ANNOTATION_GPU_TOPOLOGY: json.dumps(doc)})
    with pytest.raises(MalformedNodeError) as info:
        node_from_kube(obj)
    message = str(info.value)
    assert "gpus[1].memory_mib: must be an integer" in message
    assert "pcie_level[0][1]: must equal pcie_level[1][0]" in message


def test_an_annotation_disagreeing_with_the_gpu_count_label_is_refused():
    doc = json.dumps(dgx_document())
    obj = kube_node("n", gfd_labels(count=4), annotations={ANNOTATION_GPU_TOPOLOGY: doc})
    with pytest.raises(MalformedNodeError, match="describes 8 GPUs"):
        node_from_kube(obj)


def test_malformed_nodes_can_be_collected_instead_of_raised():
    good = kube_node("good", gfd_labels())
    bad = kube_node("bad", {**gfd_labels(), "nvidia.com/gpu.count": "x"})
    errors: list[MalformedNodeError] = []
    cluster = cluster_from_nodes([good, bad], errors=errors)
    assert [n.name for n in cluster.nodes] == ["good"]
    assert [e.node for e in errors] == ["bad"]
    with pytest.raises(MalformedNodeError):
        cluster_from_nodes([good, bad])
    with pytest.raises(ValueError, match="no usable Node objects"):
        cluster_from_nodes([bad], errors=[])


def test_objects_that_are_not_nodes_are_refused():
    with pytest.raises(TypeError, match="expected a Node"):
        node_from_kube(Node("x", (), 0, 0))


def test_level_costs_replace_the_label_sets_defaults() -> None:
    """Node labels say which unit and spine a node is under, not how fast the spine is: a 2:1
    oversubscribed spine loads back at the default cost unless ``level_costs`` says otherwise
    (the extender's ``kube.levelCosts``); names the cluster has no level for change nothing,
    and a coarser level still never costs less than a finer one."""
    from phalanx.topology.kube import known_level_names
    from phalanx.topology.kube_export import node_list
    from phalanx.topology.sources import load_cluster

    path = Path(__file__).resolve().parents[1] / "examples" / "clusters" / "rail-fat-tree-32.yaml"
    items = node_list(load_cluster(str(path)))["items"]
    default = cluster_from_nodes(items).compile()
    assert list(default.level_cost[1:]) == [10.0, 11.0]
    tuned = cluster_from_nodes(items, level_costs={"spine": 22.0, "rack": 5.0}).compile()
    assert list(tuned.level_cost[1:]) == [10.0, 22.0]
    assert list(cluster_from_nodes(items, level_costs={"spine": 1.0}).compile().level_cost[1:]) == [
        10.0,
        10.0,
    ]
    assert {"su", "spine", "cluster", "block"} <= known_level_names()
