"""Hand-made instances whose optimum is known, and instances that cannot be placed."""

import pytest
from phalanx.scheduler.cost import LATENCY_COST_PER_LEVEL, LEFTOVER_LINK_WEIGHT
from phalanx.scheduler.exact import solve, solve_detailed
from phalanx.scheduler.gang import Gang, MemberRequest
from phalanx.scheduler.placement import Placement, Unplaceable
from phalanx.scheduler.state import ClusterState
from phalanx.topology.costs import (
    COST_CROSS_SOCKET,
    COST_NVLINK4,
    COST_PCIE_GEN4_SWITCH,
    COST_SAME_LEAF,
)
from phalanx.topology.model import Cluster
from phalanx.topology.presets import cluster_preset, dgx_h100, rail_fat_tree

from tests.placement_helpers import assert_valid_placement, occupy


def two_scalable_units() -> ClusterState:
    """Four DGX H100 nodes, two per scalable unit."""
    nodes = [dgx_h100(f"n{i}") for i in range(4)]
    return ClusterState(Cluster("two-su", nodes, rail_fat_tree(nodes, su_nodes=2)).compile())


def test_two_whole_node_members_go_to_the_su_with_two_free_nodes():
    state = two_scalable_units()
    occupy(state, 1, [0])
    gang = Gang.uniform("g", 2, MemberRequest(gpus=8))
    result = solve(gang, state)
    assert isinstance(result, Placement) and result.optimal and result.solver == "exact"
    assert result.node_names == ["n2", "n3"]
    assert result.level == "su"
    assert result.cost.total == pytest.approx(COST_SAME_LEAF + LATENCY_COST_PER_LEVEL)
    assert_valid_placement(gang, result, state)


def test_two_half_node_members_share_one_nvswitch_node():
    state = two_scalable_units()
    gang = Gang.uniform("g", 2, MemberRequest(gpus=4))
    result = solve(gang, state)
    assert isinstance(result, Placement) and result.optimal
    assert result.level == "node" and len(result.node_names) == 1
    assert result.cost.total == pytest.approx(COST_NVLINK4)


def test_pcie_pair_takes_the_gpus_behind_one_switch():
    state = ClusterState(cluster_preset("hgx-pcie-l40s").compile())
    occupy(state, 0, [2, 5, 6, 7])
    gang = Gang.uniform("g", 1, MemberRequest(gpus=2))
    result = solve(gang, state)
    assert isinstance(result, Placement) and result.optimal
    assert result.members[0].gpus == (0, 1)
    stranded_pair = LEFTOVER_LINK_WEIGHT * (COST_CROSS_SOCKET - COST_PCIE_GEN4_SWITCH)
    assert result.cost.communication == pytest.approx(COST_PCIE_GEN4_SWITCH)
    assert result.cost.fragmentation == pytest.approx(0.25 + stranded_pair / COST_CROSS_SOCKET)


def test_too_large_gang_is_proven_unplaceable_by_the_reductions():
    state = two_scalable_units()
    answer = solve_detailed(Gang.uniform("g", 5, MemberRequest(gpus=8)), state)
    assert isinstance(answer.result, Unplaceable) and answer.result.proven
    assert answer.status == "PRUNED"
    assert answer.result.level == state.compiled.level_names[-1]  # the whole cluster is short


def test_nvlink_groups_that_fit_no_node_are_proven_unplaceable_by_cp_sat():
    state = two_scalable_units()
    for node in range(4):
        occupy(state, node, [0, 1])
    gang = Gang.uniform("g", 4, MemberRequest(gpus=2), nvlink_group=4)
    answer = solve_detailed(gang, state)
    assert answer.status == "INFEASIBLE"
    assert isinstance(answer.result, Unplaceable) and answer.result.proven
    assert answer.result.constraint == "nvlink_group"
    assert answer.result.level == state.compiled.level_names[-1]


def test_required_level_that_no_domain_meets_is_proven_unplaceable():
    state = two_scalable_units()
    occupy(state, 3, [0])
    occupy(state, 1, [0])
    gang = Gang.uniform("g", 2, MemberRequest(gpus=8), required_level="su")
    result = solve(gang, state)
    assert isinstance(result, Unplaceable) and result.proven
    assert (result.constraint, result.level) == ("required_level", "su")
