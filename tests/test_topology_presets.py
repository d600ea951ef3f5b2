"""Built-in node shapes and cluster presets."""

from __future__ import annotations

import numpy as np
import pytest
from phalanx.topology.costs import (
    COST_NVLINK3,
    COST_NVLINK4,
    COST_NVLINK5,
    COST_SAME_LEAF,
    COST_SAME_SPINE,
)
from phalanx.topology.model import NvlinkKind
from phalanx.topology.presets import (
    NODE_PRESETS,
    SUPERPOD_H100_SU_NODES,
    cluster_preset,
    is_preset,
    node_preset,
    rail_fat_tree,
)


@pytest.mark.parametrize(
    ("preset", "gpus", "nvlink", "nvlink_cost"),
    [
        ("dgx-h100", 8, NvlinkKind.NVSWITCH, COST_NVLINK4),
        ("dgx-a100", 8, NvlinkKind.NVSWITCH, COST_NVLINK3),
        ("gb200-nvl72", 4, NvlinkKind.NVSWITCH, COST_NVLINK5),
    ],
)
def test_nvswitch_nodes_cost_the_same_between_every_gpu_pair(preset, gpus, nvlink, nvlink_cost):
    node = node_preset(preset).make("n")
    assert node.gpu_count == gpus
    assert node.nvlink is nvlink
    pair = node.pair_cost()
    off_diagonal = pair[~np.eye(gpus, dtype=bool)]
    assert np.all(off_diagonal == nvlink_cost)
    assert [g.rail for g in node.gpus] == list(range(gpus)), "one rail NIC per GPU"


def test_pcie_l40s_costs_follow_switch_and_socket():
    pair = node_preset("hgx-pcie-l40s").make("n").pair_cost()
    assert pair[0, 1] == 15.0, "same PCIe Gen4 switch"
    assert pair[0, 2] == 15.0 * 1.25, "same socket, another switch"
    assert pair[0, 4] == 30.0, "across the sockets"
    assert pair[0, 1] < pair[0, 2] < pair[0, 4]


def test_network_cost_is_never_below_the_slowest_path_inside_the_node():
    h100 = node_preset("dgx-h100").make("n")
    l40s = node_preset("hgx-pcie-l40s").make("n")
    assert h100.egress_cost() == 9.0, "450 / 50 GB/s per GPU"
    assert l40s.egress_cost() == 450 / 6.25, "two 200G NICs shared by 8 GPUs"
    assert l40s.egress_cost() >= l40s.pair_cost().max()


def test_superpod_h100_has_scalable_units_of_32_under_one_spine():
    compiled = cluster_preset("superpod-h100:256").compile()
    assert compiled.level_names == ["node", "su", "spine"]
    su = compiled.level_index("su")
    lo, hi = compiled.level_domain_range[su]
    assert hi - lo == 256 // SUPERPOD_H100_SU_NODES
    assert np.all(compiled.domain_gpu_capacity[lo:hi] == SUPERPOD_H100_SU_NODES * 8)
    assert compiled.inter_node_cost(0, 1) == COST_SAME_LEAF
    assert compiled.inter_node_cost(0, 255) == COST_SAME_SPINE


def test_more_than_16_scalable_units_add_pod_and_core_levels():
    compiled = cluster_preset("dgx-h100:600", oversubscription=2.0).compile()
    assert compiled.level_names == ["node", "su", "pod", "core"]
    assert compiled.inter_node_cost(0, 599) == COST_SAME_SPINE * 2.0
    assert compiled.inter_node_cost(0, 33) == COST_SAME_SPINE


def test_nvl72_racks_are_nvlink_cliques_of_18_trays():
    compiled = cluster_preset("nvl72:72").compile()
    assert compiled.level_names == ["node", "clique", "su", "spine"]
    clique = compiled.level_index("clique")
    assert compiled.level_is_nvlink[clique]
    assert len(set(compiled.node_domain[clique].tolist())) == 4
    assert compiled.inter_node_cost(0, 17) == COST_NVLINK5
    assert compiled.inter_node_cost(0, 18) == COST_SAME_LEAF


def test_every_node_preset_compiles_as_a_cluster():
    for name in NODE_PRESETS:
        compiled = cluster_preset(f"{name}:3").compile()
        assert compiled.n_nodes == 3
        assert compiled.gpu_usable[:, : compiled.gpu_count[0]].all()


@pytest.mark.parametrize(
    ("spec", "error", "match"),
    [
        ("dgx-h900:4", KeyError, "known presets"),
        ("dgx-h100:0", ValueError, "at least 1"),
        ("dgx-h100:four", ValueError, "not an integer"),
    ],
)
def test_bad_preset_specs_say_what_is_wrong(spec, error, match):
    with pytest.raises(error, match=match):
        cluster_preset(spec)


def test_is_preset_accepts_names_and_aliases_only():
    assert is_preset("superpod-h100:256")
    assert is_preset("dgx-a100")
    assert not is_preset("cluster.yaml")


def test_rail_fat_tree_refuses_cliques_that_straddle_units():
    nodes = [node_preset("gb200-nvl72").make(f"n{i}") for i in range(20)]
    with pytest.raises(ValueError, match="not a multiple"):
        rail_fat_tree(nodes, su_nodes=20, nvlink_domain_nodes=18)
