"""Every constraint the fast path honours holds for the exact path too, and the exact path
is pure: it never changes the cluster state."""

import dataclasses

import numpy as np
import pytest
from phalanx.scheduler.engine import place
from phalanx.scheduler.exact import solve, solve_detailed
from phalanx.scheduler.gang import Gang, Member, MemberRequest
from phalanx.scheduler.placement import Placement, Unplaceable
from phalanx.scheduler.state import ClusterState
from phalanx.topology.model import Cluster
from phalanx.topology.presets import dgx_a100, dgx_h100, rail_fat_tree

from tests.placement_helpers import assert_valid_placement, fill_nodes, occupy

H100 = "NVIDIA-H100-80GB-HBM3"
A100 = "NVIDIA-A100-SXM4-80GB"


def mixed_state() -> ClusterState:
    """Two H100 and two A100 nodes in two scalable units; n1 is labelled and n3 tainted."""
    nodes = [dgx_h100("n0"), dgx_a100("n1"), dgx_h100("n2"), dgx_a100("n3")]
    nodes[1].labels["pool"] = "train"
    nodes[3] = dataclasses.replace(nodes[3], taints=("dedicated",))
    return ClusterState(Cluster("mixed", nodes, rail_fat_tree(nodes, su_nodes=2)).compile())


def four_h100(oversubscription: float = 1.0) -> ClusterState:
    nodes = [dgx_h100(f"n{i}") for i in range(4)]
    levels = rail_fat_tree(nodes, su_nodes=2, oversubscription=oversubscription)
    return ClusterState(Cluster("four", nodes, levels).compile())


def placed_nodes(result: Placement) -> set[str]:
    return {m.node for m in result.members}


def test_gpu_product_filter():
    state = mixed_state()
    gang = Gang.uniform("g", 2, MemberRequest(gpus=4, gpu_products=(A100,)), comm_intensity=0.2)
    result = solve(gang, state)
    assert isinstance(result, Placement)
    assert placed_nodes(result) <= {"n1"}
    assert_valid_placement(gang, result, state)


def test_taints_exclude_nodes_unless_tolerated():
    state = mixed_state()
    fill_nodes(state, [0, 1, 2])
    plain = Gang.uniform("g", 1, MemberRequest(gpus=1))
    assert isinstance(solve(plain, state), Unplaceable)
    tolerant = Gang.uniform("t", 1, MemberRequest(gpus=1, tolerations=("dedicated",)))
    result = solve(tolerant, state)
    assert isinstance(result, Placement) and placed_nodes(result) == {"n3"}


def test_node_selector():
    state = mixed_state()
    gang = Gang.uniform("g", 1, MemberRequest(gpus=8, node_selector={"pool": "train"}))
    result = solve(gang, state)
    assert isinstance(result, Placement) and placed_nodes(result) == {"n1"}


def test_required_level_keeps_the_gang_in_one_domain():
    state = four_h100()
    occupy(state, 0, [0])
    gang = Gang.uniform("g", 2, MemberRequest(gpus=8), required_level="su")
    result = solve(gang, state)
    assert isinstance(result, Placement) and result.optimal
    assert placed_nodes(result) == {"n2", "n3"}


def test_preferred_level_wins_over_a_cheaper_wider_placement():
    """Across the spine both nodes end full; inside SU 0 one node is left partly free. With a
    light communication weight the spine is cheaper, unless the gang prefers one SU."""
    state = four_h100()
    occupy(state, 0, [0, 1, 2, 3])
    occupy(state, 1, [0])
    occupy(state, 2, [0, 1, 2, 3])
    fill_nodes(state, [3])
    request = MemberRequest(gpus=4)
    free = solve(Gang.uniform("g", 2, request, comm_intensity=0.2), state)
    preferring = solve(
        Gang.uniform("g", 2, request, comm_intensity=0.2, preferred_level="su"), state
    )
    assert isinstance(free, Placement) and isinstance(preferring, Placement)
    assert free.level == "spine" and placed_nodes(free) == {"n0", "n2"}
    assert preferring.level == "su" and placed_nodes(preferring) == {"n0", "n1"}
    assert preferring.cost.total > free.cost.total
    assert preferring.optimal


def test_nvlink_groups_share_a_node():
    state = four_h100()
    for node in range(4):
        occupy(state, node, [0, 1, 2, 3])
    occupy(state, 1, [4, 5])
    gang = Gang.uniform("g", 4, MemberRequest(gpus=2), nvlink_group=2, comm_intensity=0.2)
    result = solve(gang, state)
    assert isinstance(result, Placement) and result.optimal
    assert_valid_placement(gang, result, state)
    by_member = {m.member: m.node for m in result.members}
    assert by_member["g-0"] == by_member["g-1"] and by_member["g-2"] == by_member["g-3"]


def test_quorum_places_the_first_members_when_the_gang_does_not_fit():
    state = four_h100()
    fill_nodes(state, [0, 1])
    gang = Gang.uniform("g", 3, MemberRequest(gpus=8), min_members=2)
    result = solve(gang, state)
    assert isinstance(result, Placement) and result.optimal
    assert [m.member for m in result.members] == ["g-0", "g-1"]
    assert_valid_placement(gang, result, state)


def test_whole_gang_is_preferred_to_a_cheaper_quorum():
    state = four_h100()
    gang = Gang.uniform("g", 3, MemberRequest(gpus=8), min_members=1)
    result = solve(gang, state)
    assert isinstance(result, Placement) and len(result.members) == 3


def test_cpu_and_memory_limit_members_per_node():
    state = four_h100()
    occupy(state, 0, [0], cpu_milli=220_000)
    request = MemberRequest(gpus=1, cpu_milli=3_000, memory_mib=1024)
    gang = Gang.uniform("g", 2, request)
    result = solve(gang, state)
    assert isinstance(result, Placement)
    assert "n0" not in placed_nodes(result)
    assert_valid_placement(gang, result, state)


def test_fractional_and_cpu_only_members():
    state = four_h100()
    members = (
        Member("launcher", MemberRequest(cpu_milli=4_000)),
        Member("w0", MemberRequest(gpu_milli=500)),
        Member("w1", MemberRequest(gpu_milli=500)),
    )
    gang = Gang("g", members)
    result = solve(gang, state)
    assert isinstance(result, Placement) and result.optimal
    assert_valid_placement(gang, result, state)
    workers = [m for m in result.members if m.member != "launcher"]
    assert workers[0].gpus == workers[1].gpus, "two halves of one GPU leave the others whole"


def test_state_is_never_mutated():
    state = mixed_state()
    occupy(state, 0, [0, 1], cpu_milli=1_000)
    before = state.compiled.mutable_state_bytes()
    holdings = dict(state.holdings)
    for gang in (
        Gang.uniform("a", 3, MemberRequest(gpus=4)),
        Gang.uniform("b", 9, MemberRequest(gpus=8)),
        Gang.uniform("c", 2, MemberRequest(gpu_milli=300), nvlink_group=0),
    ):
        hint = place(gang, state, solver="fast")
        solve(gang, state, hint=hint if isinstance(hint, Placement) else None)
    assert state.compiled.mutable_state_bytes() == before
    assert state.holdings == holdings
    state.check_invariants()


def test_hint_is_never_beaten_by_a_worse_answer():
    state = four_h100()
    occupy(state, 0, [0, 2, 4])
    occupy(state, 2, [1])
    gang = Gang.uniform("g", 5, MemberRequest(gpus=2), comm_intensity=0.5)
    hint = place(gang, state, solver="fast")
    assert isinstance(hint, Placement)
    answer = solve_detailed(gang, state, hint=hint, time_limit_s=0.05)
    assert isinstance(answer.result, Placement)
    assert answer.cost <= hint.cost.total + 1e-9


class PreferNode:
    """A scorer that ranks one node above all others."""

    name = "prefer"

    def __init__(self, node: int) -> None:
        self.node = node

    def score(self, compiled, request, nodes):
        return (np.asarray(nodes) == self.node).astype(np.float64)

    def pick_gpu(self, compiled, request, node):
        return None


@pytest.mark.parametrize("node", [1, 3])
def test_scorer_breaks_ties_between_equal_cost_placements(node):
    state = four_h100()
    gang = Gang.uniform("g", 1, MemberRequest(gpus=8))
    result = solve(gang, state, scorer=PreferNode(node))
    plain = solve(gang, state)
    assert isinstance(result, Placement) and result.optimal
    assert isinstance(plain, Placement)
    assert result.members[0].node_index == node
    assert result.cost.total == plain.cost.total
