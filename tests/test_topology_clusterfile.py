"""Cluster files: the shipped examples, the schema's features, and errors with locations."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from phalanx.topology.clusterfile import (
    ClusterFileError,
    NamePattern,
    PatternError,
    cluster_from_document,
    load_cluster_file,
)
from phalanx.topology.costs import cost_from_gbps
from phalanx.topology.model import NvlinkKind
from phalanx.topology.sources import ClusterSourceError, load_cluster

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "clusters"


def write(tmp_path: Path, text: str, name: str = "cluster.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ClusterFileError) as info:
        load_cluster_file(path)
    return info.value.problems


def h100_pool(**extra: object) -> dict:
    return {"name": "h100", "preset": "dgx-h100", "count": 4, **extra}


# ---------------------------------------------------------------------------- examples
@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*")), ids=lambda p: p.name)
def test_every_example_loads_and_compiles(path):
    cluster = load_cluster_file(path)
    compiled = cluster.compile()
    assert compiled.n_nodes == len(cluster.nodes) > 1
    assert (
        compiled.domain_gpu_capacity[compiled.level_domain_range[-1][0]]
        == compiled.gpu_usable.sum()
    )


def test_mixed_example_keeps_equal_domain_names_under_different_parents_apart():
    cluster = load_cluster_file(EXAMPLES / "mixed-h100-l40s.yaml")
    compiled = cluster.compile()
    h100, l40s = compiled.node_index["h100-000"], compiled.node_index["l40s-000"]
    assert cluster.nodes[h100].domains["su"] == cluster.nodes[l40s].domains["su"] == "su0"
    su = compiled.level_index("su")
    assert compiled.node_domain[su, h100] != compiled.node_domain[su, l40s]
    assert compiled.inter_node_cost(h100, l40s) == 450 / 6.25, "the L40S NICs are the bottleneck"
    assert compiled.level_cost.tolist()[1:] == [10.0, 11.0, 22.0]
    l40s_node = cluster.nodes[l40s]
    assert l40s_node.taints == ("phalanx.io/inference-only",)
    assert l40s_node.labels["phalanx.io/pool"] == "inference"
    assert l40s_node.nvlink is NvlinkKind.NONE
    assert [g.numa_node for g in l40s_node.gpus] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [g.pcie_switch for g in l40s_node.gpus] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [g.rail for g in l40s_node.gpus] == [0, 0, 0, 0, 1, 1, 1, 1]


def test_gb200_example_builds_one_nvlink_clique_per_rack():
    cluster = load_cluster_file(EXAMPLES / "gb200-nvl72.yaml")
    compiled = cluster.compile()
    assert compiled.level_names == ["node", "clique", "su", "spine"]
    assert cluster.nodes[19].name == "gb200-r1-t01"
    clique = compiled.level_index("clique")
    assert len(set(compiled.node_domain[clique].tolist())) == 4
    assert compiled.inter_node_cost(0, 17) == 0.5


def test_json_example_has_bridged_pairs_and_cpu_nodes():
    cluster = load_cluster_file(EXAMPLES / "pcie-lab.json")
    a100 = cluster.node("a100-pcie-0000")
    assert a100.nvlink is NvlinkKind.BRIDGE
    assert [g.nvlink_group for g in a100.gpus] == [0, 0, 1, 1]
    assert a100.pair_cost()[0, 1] == 3.0
    cpu = cluster.node("cpu-0001")
    assert cpu.gpu_count == 0 and cpu.domains["rack"] == "rack1"


# ---------------------------------------------------------------------------- features
def test_name_patterns_evaluate_arithmetic_and_formats():
    pattern = NamePattern.parse("r{index//18}-t{index%18:02d}-{pool}-{node+1}")
    assert pattern.render(index=37, node=40, pool="gb") == "r2-t01-gb-41"
    assert NamePattern.parse("spine").render(0, 0, "p") == "spine"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("su{index//}", "cannot read field"),
        ("su{rack}", "unknown variable"),
        ("su{index", "unbalanced"),
        ("su{index%0}", "division by zero"),
        ("su{pool+1}", "not to pool"),
        ("su{index:zz}", "bad format"),
    ],
)
def test_bad_name_patterns_say_why(text, match):
    with pytest.raises(PatternError, match=match):
        NamePattern.parse(text)


def test_cost_overrides_reach_nodes_and_levels():
    doc = {
        "costs": {"nvlink4": 2.0, "levels": {"spine": 12.5}},
        "fabric": {"preset": "rail-fat-tree"},
        "node_pools": [h100_pool()],
    }
    cluster = cluster_from_document(doc)
    compiled = cluster.compile()
    assert compiled.pair_cost(0, 0, 0, 1) == 2.0
    assert compiled.level_cost[compiled.level_index("spine")] == 12.5


def test_level_bandwidth_becomes_cost_with_oversubscription():
    doc = {
        "fabric": {
            "levels": [
                {"name": "leaf", "gbps_per_gpu": 50},
                {"name": "core", "gbps_per_gpu": 50, "oversubscription": 3},
            ]
        },
        "node_pools": [h100_pool(domains={"leaf": "leaf{index//2}", "core": "core"})],
    }
    levels = cluster_from_document(doc).levels
    assert [lvl.cost for lvl in levels] == [cost_from_gbps(50), cost_from_gbps(50, 3)]
    assert levels[1].oversubscription == 3


def test_preset_fields_can_be_adjusted():
    doc = {
        "node_pools": [
            h100_pool(count=1, node={"cpu_milli": 100_000, "gpu_memory_mib": 1000, "memory_mib": 5})
        ]
    }
    (node,) = cluster_from_document(doc).nodes
    assert node.cpu_milli == 100_000
    assert node.memory_mib == 5
    assert {g.memory_mib for g in node.gpus} == {1000}
    assert node.nvlink is NvlinkKind.NVSWITCH


def test_domains_can_be_listed_node_by_node():
    doc = {
        "fabric": {"levels": [{"name": "rack", "cost": 10}]},
        "node_pools": [h100_pool(count=3, domains={"rack": ["x", "y", "x"]})],
    }
    cluster = cluster_from_document(doc)
    assert [n.domains["rack"] for n in cluster.nodes] == ["x", "y", "x"]


def test_pool_domains_override_a_preset_fabric():
    doc = {
        "fabric": {"preset": "rail-fat-tree", "su_nodes": 2},
        "node_pools": [h100_pool(count=4, domains={"su": "all"})],
    }
    cluster = cluster_from_document(doc)
    assert {n.domains["su"] for n in cluster.nodes} == {"all"}


def test_one_node_needs_no_fabric():
    cluster = cluster_from_document({"node_pools": [h100_pool(count=1)]})
    assert cluster.levels == [] and cluster.compile().level_names == ["node"]


# ---------------------------------------------------------------------------- errors
def test_every_problem_is_reported_with_its_line_and_field(tmp_path):
    path = write(
        tmp_path,
        """\
        name: bad
        costs:
          nvlink4: -1
          host_bridge_factor: 0.5
        fabric:
          levels:
            - name: rack
              cost: 10
              gbps_per_gpu: 3
            - name: spine
              cost: 5
              colour: red
        node_pools:
          - name: a
            preset: dgx-h900
            count: 0
          - name: b
            count: two
            node:
              gpus: 100
              product: X
              nvlink: {kind: nvswitch, generation: 7}
              pcie: {generation: 3}
              cpu_milli: 1
            domains:
              rack: "r{index//}"
          - name: b
            count: 3
            preset: dgx-h100
            node: {gpus: 4}
        """,
    )
    problems = problems_of(path)
    expected = [
        "cluster.yaml:3: costs.nvlink4: must be positive",
        "cluster.yaml:4: costs.host_bridge_factor: must be at least 1",
        "cluster.yaml:7: fabric.levels[0]: give exactly one of 'cost' and 'gbps_per_gpu'",
        "cluster.yaml:12: fabric.levels[1].colour: unknown field",
        "cluster.yaml:15: node_pools[0].preset: unknown node preset 'dgx-h900'",
        "cluster.yaml:16: node_pools[0].count: must be at least 1",
        "cluster.yaml:18: node_pools[1].count: must be an integer",
        "cluster.yaml:19: node_pools[1].node.memory_mib: is required",
        "cluster.yaml:20: node_pools[1].node.gpus: at most 64 GPUs",
        "cluster.yaml:22: node_pools[1].node.nvlink.generation: must be one of (3, 4, 5)",
        "cluster.yaml:23: node_pools[1].node.pcie.generation: must be one of (4, 5)",
        "cluster.yaml:26: node_pools[1].domains.rack: cannot read field {index//}",
        "cluster.yaml:27: node_pools[2].name: pool name 'b' is already used by node_pools[1]",
        "cluster.yaml:30: node_pools[2].node.gpus: unknown field",
    ]
    assert len(problems) == len(expected)
    for want, got in zip(expected, problems, strict=True):
        assert got.startswith(str(tmp_path / want.split(":")[0]))
        assert want.split(":", 1)[1] in got


def test_levels_that_get_cheaper_going_up_are_refused(tmp_path):
    path = write(
        tmp_path,
        """\
        fabric:
          levels:
            - {name: rack, cost: 10}
            - {name: spine, cost: 5}
        node_pools:
          - {name: h, preset: dgx-h100, count: 2, domains: {rack: r, spine: s}}
        """,
    )
    (problem,) = problems_of(path)
    assert "fabric: level costs must not fall" in problem and "spine=5" in problem


def test_missing_and_unknown_domains_name_pool_and_level(tmp_path):
    path = write(
        tmp_path,
        """\
        fabric:
          levels:
            - {name: rack, cost: 10}
            - {name: spine, cost: 11}
        node_pools:
          - {name: h, preset: dgx-h100, count: 2, domains: {rack: r, spin: s}}
        """,
    )
    problems = problems_of(path)
    assert any("node_pools[0].domains.spin: no fabric level named 'spin'" in p for p in problems)
    path = write(
        tmp_path,
        """\
        fabric:
          levels:
            - {name: rack, cost: 10}
            - {name: spine, cost: 11}
        node_pools:
          - {name: h, preset: dgx-h100, count: 2, domains: {rack: r}}
        """,
    )
    (problem,) = problems_of(path)
    assert ":6: node_pools[0].domains: no domain for level(s) spine" in problem


def test_unknown_level_in_cost_overrides_is_named(tmp_path):
    doc = {
        "costs": {"levels": {"leaf": 3}},
        "fabric": {"preset": "rail-fat-tree"},
        "node_pools": [h100_pool()],
    }
    with pytest.raises(ClusterFileError, match=r"costs\.levels\.leaf: no fabric level named"):
        cluster_from_document(doc)


def test_repeated_node_names_are_refused():
    doc = {
        "fabric": {"preset": "rail-fat-tree"},
        "node_pools": [h100_pool(node_name="n{index}"), h100_pool(name="b", node_name="n{index}")],
    }
    with pytest.raises(
        ClusterFileError, match=r"node_pools\[1\]\.node_name: node name 'n0' repeats"
    ):
        cluster_from_document(doc)


def test_preset_fabric_needs_a_unit_size_when_presets_disagree():
    doc = {
        "fabric": {"preset": "rail-fat-tree"},
        "node_pools": [h100_pool(), {"name": "a", "preset": "dgx-a100", "count": 2}],
    }
    with pytest.raises(ClusterFileError, match=r"fabric\.su_nodes: is required"):
        cluster_from_document(doc)


def test_multi_node_nvlink_fabric_refuses_pools_without_it():
    doc = {
        "fabric": {"preset": "rail-fat-tree", "su_nodes": 18, "nvlink_domain_nodes": 18},
        "node_pools": [h100_pool()],
    }
    with pytest.raises(ClusterFileError, match="pool 'h100' has no multi-node NVLink"):
        cluster_from_document(doc)


def test_several_nodes_need_a_fabric():
    with pytest.raises(ClusterFileError, match="fabric: is required"):
        cluster_from_document({"node_pools": [h100_pool()]})


def test_explicit_shape_needs_its_network_bandwidth():
    doc = {
        "node_pools": [
            {
                "name": "x",
                "count": 1,
                "node": {
                    "gpus": 2,
                    "product": "P",
                    "gpu_memory_mib": 1,
                    "cpu_milli": 1,
                    "memory_mib": 1,
                },
            }
        ]
    }
    with pytest.raises(ClusterFileError, match="give 'nics' or 'network_gbps_per_gpu'"):
        cluster_from_document(doc)


def test_yaml_syntax_errors_and_repeated_keys_carry_lines(tmp_path):
    (problem,) = problems_of(write(tmp_path, "node_pools: [\n  {name: a\n"))
    assert "invalid YAML" in problem and "cluster.yaml:3" in problem
    problems = problems_of(
        write(tmp_path, "node_pools:\n  - {name: a, preset: dgx-h100, count: 1, count: 2}\n")
    )
    assert any(":2: node_pools[0].count: is given twice" in p for p in problems)


def test_json_errors_carry_lines(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{\n  "node_pools": [\n    {"name": "a",}\n  ]\n}\n')
    (problem,) = problems_of(path)
    assert "c.json:3: invalid JSON" in problem
    path.write_text(json.dumps({"node_pools": [{"name": "a", "count": -1}]}, indent=1))
    problems = problems_of(path)
    assert any("c.json:5: node_pools[0].count: must be at least 1" in p for p in problems)


def test_wrong_document_types_are_named():
    for doc, match in [
        ([], "must be a mapping, got a list"),
        ({"node_pools": {}}, r"node_pools: must be a list, got a mapping"),
        ({"node_pools": []}, "must list at least one pool"),
        ({"node_pools": [3]}, r"node_pools\[0\]: must be a mapping, got an integer"),
        ({"node_pools": [{"name": "a", "count": True, "preset": "dgx-h100"}]}, "got a boolean"),
        ({"node_pools": [{"name": "a", "count": 1}]}, "give a node 'preset' or a 'node' shape"),
    ]:
        with pytest.raises(ClusterFileError, match=match):
            cluster_from_document(doc)


def test_missing_file_is_a_cluster_file_error(tmp_path):
    with pytest.raises(ClusterFileError, match="cannot read file"):
        load_cluster_file(tmp_path / "absent.yaml")


def test_load_cluster_takes_presets_cluster_files_and_node_lists(tmp_path):
    assert len(load_cluster("superpod-h100:4").nodes) == 4
    assert load_cluster(str(EXAMPLES / "gb200-nvl72.yaml")).name == "gb200-nvl72-4-racks"
    node_list = tmp_path / "nodes.yaml"
    node_list.write_text("kind: NodeList\nitems: {}\n")
    with pytest.raises(ClusterFileError, match="items: must be a list"):
        load_cluster(str(node_list))
    with pytest.raises(ClusterSourceError, match="neither a cluster preset"):
        load_cluster(str(tmp_path / "absent.yaml"))
    with pytest.raises(ClusterSourceError, match="node count must be at least 1"):
        load_cluster("dgx-h100:0")
