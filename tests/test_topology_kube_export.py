"""``phalanx topology export``: a cluster as Kubernetes Node objects that load back as the same
cluster through the Node loader ``phalanx topology show`` and ``phalanx serve`` use."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from kubernetes.utils import parse_quantity
from phalanx.topology.discovery import ANNOTATION_GPU_TOPOLOGY
from phalanx.topology.kube import cluster_from_nodes
from phalanx.topology.kube_export import (
    ExportError,
    cpu_quantity,
    memory_quantity,
    node_list,
    round_trip_differences,
)
from phalanx.topology.model import Cluster, FabricLevel, Node, NvlinkKind
from phalanx.topology.presets import cluster_preset, dgx_h100
from phalanx.topology.sources import load_cluster

from phalanx.cli import main
from tests.topology_strategies import gfd_labels, kube_node

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "clusters"
PRESETS = ["dgx-h100:16", "l40s-cluster:4", "superpod-h100:32", "superpod-h100:600", "nvl72:72"]
FILES = ["mixed-h100-l40s.yaml", "pcie-lab.json", "gb200-nvl72.yaml"]
FILE_LEVEL_COSTS = {"mixed-h100-l40s.yaml": {"core"}, "pcie-lab.json": {"rack", "cluster"}}
"""Levels whose cost the cluster file sets away from the phalanx label set's default: Node
objects do not carry costs, so these load back at the default."""
QUANTITY = re.compile(r"^[0-9]+(m|Mi|Gi)?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


def run(*args: str):
    return CliRunner().invoke(main, ["topology", *args])


def _partition(values: list[int]) -> list[tuple[int, ...]]:
    """Which positions share a value, independent of how the values are numbered."""
    groups: dict[int, list[int]] = {}
    for i, v in enumerate(values):
        groups.setdefault(v, []).append(i)
    return sorted(tuple(g) for g in groups.values())


def describe(cluster: Cluster) -> dict:
    """Everything placement reads, with switch and NVLink group numbers reduced to which GPUs
    share one, and the NVLink generation only where an NVSwitch gives it a cost."""
    compiled = cluster.compile()
    nodes = []
    for n in cluster.nodes:
        nodes.append(
            {
                "name": n.name,
                "gpus": [
                    (g.uuid, g.product, g.memory_mib, g.numa_node, g.rail, g.mig_enabled, g.healthy)
                    for g in n.gpus
                ],
                "nvlink": n.nvlink if n.gpus else NvlinkKind.NONE,
                "nvswitch_generation": n.nvlink_generation
                if n.nvlink is NvlinkKind.NVSWITCH
                else None,
                "pcie_generation": n.pcie_generation if n.gpus else None,
                "p2p": n.p2p_supported if n.gpu_count > 1 else None,
                "pcie_switches": _partition([g.pcie_switch for g in n.gpus]),
                "nvlink_groups": [
                    grp
                    for grp in _partition([g.nvlink_group for g in n.gpus])
                    if len(grp) > 1 and n.gpus[grp[0]].nvlink_group >= 0
                ],
                "nics": [(x.name, x.line_rate_gbit_s, x.numa_node, x.rail) for x in n.nics]
                if n.gpus
                else [],
                "network_gbps_per_gpu": n.network_gbps_per_gpu if n.gpus else None,
                "cpu_milli": n.cpu_milli,
                "memory_mib": n.memory_mib,
                "taints": n.taints,
                "domains": n.domains,
            }
        )
    return {
        "nodes": nodes,
        "levels": [(lvl.name, lvl.nvlink) for lvl in cluster.levels],
        "domain_names": compiled.domain_names,
        "node_domain": compiled.node_domain.tolist(),
        "pair_cost": compiled.shape_pair_cost[compiled.node_shape].tolist(),
        "egress": compiled.node_egress_cost.tolist(),
        "gpu_rail": compiled.gpu_rail.tolist(),
        "gpu_numa": compiled.gpu_numa.tolist(),
        "gpu_usable": compiled.gpu_usable.tolist(),
        "products": [compiled.products, compiled.node_product.tolist()],
    }


def _load_back(doc: dict, tmp_path: Path, fmt: str = "json") -> Cluster:
    """Through the file path ``phalanx topology show nodes.json`` takes."""
    path = tmp_path / f"nodes.{fmt}"
    path.write_text(json.dumps(doc) if fmt == "json" else yaml.safe_dump(doc))
    return load_cluster(str(path))


# ---------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("spec", PRESETS + FILES)
def test_exported_nodes_load_back_as_the_same_cluster(spec, tmp_path):
    original = load_cluster(spec if spec in PRESETS else str(EXAMPLES / spec))
    doc = node_list(original)
    rebuilt = _load_back(doc, tmp_path)
    assert describe(rebuilt) == describe(original)
    for before, after in zip(original.nodes, rebuilt.nodes, strict=True):
        assert before.labels.items() <= after.labels.items()
    costs_set_by_file = FILE_LEVEL_COSTS.get(spec, set())
    for before, after in zip(original.levels, rebuilt.levels, strict=True):
        if before.name not in costs_set_by_file:
            assert after.cost == before.cost, before.name
    notes = round_trip_differences(original, doc)
    assert sorted(n.split("'")[1] for n in notes) == sorted(costs_set_by_file)


@pytest.mark.parametrize("spec", ["nvl72:36", "superpod-h100:64", str(EXAMPLES / FILES[0])])
def test_exporting_the_loaded_cluster_again_gives_the_same_objects(spec):
    doc = node_list(load_cluster(spec))
    assert node_list(cluster_from_nodes(doc["items"])) == doc


def test_yaml_output_loads_back_the_same(tmp_path):
    original = cluster_preset("nvl72:36")
    assert describe(_load_back(node_list(original), tmp_path, "yaml")) == describe(original)


def test_unhealthy_and_mig_gpus_survive():
    node = dgx_h100("odd-0")
    gpus = list(node.gpus)
    gpus[2] = dataclasses.replace(gpus[2], mig_enabled=True)
    gpus[7] = dataclasses.replace(gpus[7], healthy=False)
    odd = dataclasses.replace(node, gpus=tuple(gpus), domains={})
    original = Cluster("odd", [odd], [])
    doc = node_list(original)
    status = doc["items"][0]["status"]
    assert status["capacity"]["nvidia.com/gpu"] == "7"
    assert status["allocatable"]["nvidia.com/gpu"] == "6"
    assert doc["items"][0]["metadata"]["labels"]["nvidia.com/mig.strategy"] == "mixed"
    assert describe(cluster_from_nodes(doc["items"])) == describe(original)


def test_a_node_list_in_another_label_set_can_be_written_in_that_set():
    labels = {**gfd_labels(), "cloud.google.com/gce-topology-block": "b0"}
    nodes = [
        kube_node(f"n{i}", {**labels, "cloud.google.com/gce-topology-subblock": f"s{i // 2}"})
        for i in range(4)
    ]
    cluster = cluster_from_nodes(nodes)
    with pytest.raises(ExportError, match="'subblock' has no label in the 'phalanx' label set"):
        node_list(cluster)
    doc = node_list(cluster, "gke")
    assert describe(cluster_from_nodes(doc["items"])) == describe(cluster)
    assert round_trip_differences(cluster, doc) == []


# ---------------------------------------------------------------------------- the objects
def test_output_is_a_kubernetes_node_list_a_client_can_create():
    doc = node_list(cluster_preset("superpod-h100:40"))
    assert doc["apiVersion"] == "v1" and doc["kind"] == "NodeList"
    assert len(doc["items"]) == 40
    for item in doc["items"]:
        assert item["apiVersion"] == "v1" and item["kind"] == "Node"
        meta = item["metadata"]
        assert set(meta) == {"name", "labels", "annotations"}
        assert item["spec"] == {}
        labels = meta["labels"]
        assert labels["kubernetes.io/hostname"] == meta["name"]
        assert labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
        assert labels["nvidia.com/gpu.count"] == "8"
        assert labels["nvidia.com/gpu.memory"] == "81920"
        assert labels["phalanx.io/su"] in ("su0", "su1")
        assert labels["phalanx.io/spine"] == "spine"
        assert all(LABEL_VALUE.match(v) and len(v) <= 63 for v in labels.values())
        topology = json.loads(meta["annotations"][ANNOTATION_GPU_TOPOLOGY])
        assert topology["kind"] == "phalanx.io/gpu-topology" and len(topology["gpus"]) == 8
        status = item["status"]
        for resources in (status["capacity"], status["allocatable"]):
            assert set(resources) == {"cpu", "memory", "pods", "nvidia.com/gpu"}
            assert all(isinstance(v, str) and QUANTITY.match(v) for v in resources.values())
        assert status["allocatable"] == {
            "cpu": "224",
            "memory": "2048Gi",
            "pods": "110",
            "nvidia.com/gpu": "8",
        }
        assert {"type": "Ready", "status": "True"}.items() <= status["conditions"][0].items()


def test_quantities_are_exact_kubernetes_quantities():
    assert cpu_quantity(224_000) == "224" and cpu_quantity(223_500) == "223500m"
    assert memory_quantity(2048 * 1024) == "2048Gi" and memory_quantity(46068) == "46068Mi"
    for milli in (1, 999, 128_000, 223_500):
        assert parse_quantity(cpu_quantity(milli)) * 1000 == milli
    for mib in (1, 46068, 1024, 2048 * 1024):
        assert parse_quantity(memory_quantity(mib)) == mib * 1024 * 1024


def test_cpu_only_nodes_taints_and_pool_labels():
    doc = node_list(load_cluster(str(EXAMPLES / "pcie-lab.json")))
    cpu = doc["items"][-1]
    assert "annotations" not in cpu["metadata"]
    assert "nvidia.com/gpu" not in cpu["status"]["allocatable"]
    assert not any(k.startswith("nvidia.com/") for k in cpu["metadata"]["labels"])
    mixed = node_list(load_cluster(str(EXAMPLES / "mixed-h100-l40s.yaml")))["items"]
    assert mixed[0]["metadata"]["labels"]["phalanx.io/pool"] == "training"
    assert mixed[-1]["spec"] == {
        "taints": [{"key": "phalanx.io/inference-only", "effect": "NoSchedule"}]
    }


def _two_nodes(level: FabricLevel, name: str = "a") -> Cluster:
    nodes = [dgx_h100(name), dgx_h100("b")]
    for i, n in enumerate(nodes):
        n.domains.update({level.name: f"d{i}", "spine": "spine"})
    return Cluster("c", nodes, [level, FabricLevel("spine", 11.0)])


def test_clusters_nodes_cannot_hold_are_refused():
    with pytest.raises(ExportError, match="level 'zone' has no label"):
        node_list(_two_nodes(FabricLevel("zone", 10.0)))
    with pytest.raises(ExportError, match="node name 'GPU_A'"):
        node_list(_two_nodes(FabricLevel("su", 10.0), name="GPU_A"))
    spine_below_su = Cluster(
        "c", [dgx_h100("a")], [FabricLevel("spine", 10), FabricLevel("su", 10)]
    )
    for lvl in spine_below_su.levels:
        spine_below_su.nodes[0].domains[lvl.name] = "x"
    with pytest.raises(ExportError, match="out of the 'phalanx' label set's order"):
        node_list(spine_below_su)
    bad_value = _two_nodes(FabricLevel("su", 10.0))
    bad_value.nodes[0].domains["su"] = "su 0"
    with pytest.raises(ExportError, match="not a valid Kubernetes label value"):
        node_list(bad_value)


# ---------------------------------------------------------------------------- command line
def test_export_writes_a_file_that_show_reads(tmp_path):
    out = tmp_path / "nodes.json"
    result = run("export", "dgx-h100:16", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert json.loads(out.read_text())["kind"] == "NodeList"
    shown = run("show", str(out), "--json")
    assert shown.exit_code == 0, shown.output
    summary = json.loads(shown.stdout)
    assert summary["nodes"] == 16 and summary["gpus"] == 128
    names = run("show", str(out), "--nodes").stdout.splitlines()
    assert names == run("show", "dgx-h100:16", "--nodes").stdout.splitlines()
    assert names == [f"h100-{i:05d}" for i in range(16)]


def test_export_yaml_to_stdout_and_notes_on_stderr():
    result = run("export", str(EXAMPLES / "mixed-h100-l40s.yaml"), "--format", "yaml")
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(result.stdout)
    assert doc["kind"] == "NodeList" and len(doc["items"]) == 96
    assert result.stderr.splitlines() == [
        "note: level 'core' costs 22 here, 11 loaded back (label-set default)"
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("dgx-h900:4", "is neither a cluster preset"),
        ("dgx-h100:x", "node count 'x' is not an integer"),
        ("no-such-file.json", "is neither a cluster preset"),
    ],
)
def test_export_of_a_bad_spec_is_one_error_line(spec, message):
    result = run("export", spec)
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_export_of_a_cluster_the_label_set_cannot_name_fails(tmp_path):
    nodes = [
        kube_node(f"n{i}", {**gfd_labels(), "cloud.google.com/gce-topology-block": f"b{i}"})
        for i in range(2)
    ]
    path = tmp_path / "gke.json"
    path.write_text(json.dumps({"kind": "NodeList", "items": nodes}))
    result = run("export", str(path))
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1 and "'block' has no label" in result.stderr
    ok = run("export", str(path), "--write-labels", "gke")
    assert ok.exit_code == 0, ok.output
    assert all(
        n.domains["block"] == f"b{i}"
        for i, n in enumerate(cluster_from_nodes(json.loads(ok.stdout)["items"]).nodes)
    )


def test_a_node_with_no_cpu_or_memory_gets_named_defaults():
    node = Node("tiny", (), cpu_milli=0, memory_mib=0)
    status = node_list(Cluster("c", [node], []))["items"][0]["status"]
    assert status["allocatable"] == {"cpu": "64", "memory": "256Gi", "pods": "110"}
