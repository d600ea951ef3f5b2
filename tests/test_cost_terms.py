"""Hand-checked values of each placement-cost term on preset clusters, and each member's part
of them."""

import dataclasses

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from phalanx.scheduler.cost import (
    FRAGMENTATION_WEIGHT,
    LATENCY_COST_PER_LEVEL,
    NUMA_SPLIT_PENALTY,
    RAIL_MISALIGN_PENALTY,
    lowest_common_domain,
    member_costs,
    placement_cost,
)
from phalanx.scheduler.engine import place
from phalanx.scheduler.gang import Gang, GangSpecError, MemberRequest
from phalanx.scheduler.placement import MemberPlacement, Placement
from phalanx.topology.costs import COST_CROSS_SOCKET, COST_NVLINK4, COST_SAME_LEAF, COST_SAME_SPINE
from phalanx.topology.presets import cluster_preset

from tests.placement_helpers import half_busy
from tests.test_placement_determinism import gangs
from tests.topology_strategies import clusters


def member(name: str, node: int, gpus: tuple[int, ...]) -> MemberPlacement:
    return MemberPlacement(name, f"n{node}", node, gpus, 1000)


@pytest.fixture(scope="module")
def h100():
    return cluster_preset("superpod-h100:64")


def test_single_node_gang_costs_nvlink_only(h100):
    compiled = h100.compile()
    gang = Gang.uniform("g", 2, MemberRequest(gpus=4))
    cost = placement_cost(
        compiled, gang, [member("g-0", 0, (0, 1, 2, 3)), member("g-1", 0, (4, 5, 6, 7))]
    )
    assert cost.communication == COST_NVLINK4
    assert cost.fragmentation == 0.0
    assert cost.latency == 0.0


def test_two_nodes_in_one_su_cost_a_leaf_hop_and_strand_half_nodes(h100):
    compiled = h100.compile()
    gang = Gang.uniform("g", 2, MemberRequest(gpus=4))
    cost = placement_cost(
        compiled, gang, [member("g-0", 0, (0, 1, 2, 3)), member("g-1", 1, (0, 1, 2, 3))]
    )
    assert cost.communication == COST_SAME_LEAF
    assert cost.fragmentation == pytest.approx(2 * FRAGMENTATION_WEIGHT * 0.5)
    assert cost.latency == LATENCY_COST_PER_LEVEL


def test_crossing_scalable_units_costs_the_spine_and_rail_misalignment(h100):
    compiled = h100.compile()
    gang = Gang.uniform("g", 2, MemberRequest(gpus=4))
    cost = placement_cost(
        compiled, gang, [member("g-0", 0, (0, 1, 2, 3)), member("g-1", 40, (4, 5, 6, 7))]
    )
    assert cost.communication == COST_SAME_SPINE
    assert cost.misalignment == pytest.approx(RAIL_MISALIGN_PENALTY * 0.5)
    assert cost.latency == 2 * LATENCY_COST_PER_LEVEL


def test_communication_scales_with_intensity(h100):
    compiled = h100.compile()
    gang = Gang.uniform("g", 2, MemberRequest(gpus=8), comm_intensity=0.2)
    cost = placement_cost(
        compiled, gang, [member("g-0", 0, tuple(range(8))), member("g-1", 1, tuple(range(8)))]
    )
    assert cost.communication == pytest.approx(0.2 * COST_SAME_LEAF)


def test_pcie_node_penalises_socket_split():
    compiled = cluster_preset("hgx-pcie-l40s").compile()
    gang = Gang.uniform("g", 1, MemberRequest(gpus=2))
    split = placement_cost(compiled, gang, [member("g-0", 0, (3, 4))])
    paired = placement_cost(compiled, gang, [member("g-0", 0, (0, 1))])
    assert split.communication == COST_CROSS_SOCKET
    assert split.misalignment == NUMA_SPLIT_PENALTY
    assert paired.total < split.total


def test_whole_node_member_is_not_charged_for_spanning_sockets(h100):
    compiled = h100.compile()
    gang = Gang.uniform("g", 1, MemberRequest(gpus=8))
    assert placement_cost(compiled, gang, [member("g-0", 0, tuple(range(8)))]).misalignment == 0.0


def test_lowest_common_domain_levels(h100):
    compiled = h100.compile()
    assert lowest_common_domain(compiled, [3])[0] == 0
    assert compiled.level_names[lowest_common_domain(compiled, [0, 31])[0]] == "su"
    assert compiled.level_names[lowest_common_domain(compiled, [0, 32])[0]] == "spine"


# ---------------------------------------------------------------------------- per member
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cluster=clusters(), data=st.data(), seed=st.integers(0, 2**16))
def test_member_costs_add_up_to_the_gang_cost(cluster, data, seed):
    """Fragmentation and misalignment of the members add up to the gang's; communication
    and latency of the gang are the members' largest."""
    state = half_busy(cluster, seed)
    gang = data.draw(gangs(state.compiled.level_names))
    try:
        result = place(dataclasses.replace(gang, min_members=0), state)
    except GangSpecError:
        return
    if not isinstance(result, Placement):
        return
    event(f"placed {len(result.members)} members at level {result.level}")
    gang_cost = placement_cost(state.compiled, gang, result.members)
    parts = member_costs(state.compiled, gang, result.members)
    assert len(parts) == len(result.members)
    assert sum(p.fragmentation for p in parts) == pytest.approx(gang_cost.fragmentation)
    assert sum(p.misalignment for p in parts) == pytest.approx(gang_cost.misalignment)
    assert max(p.communication for p in parts) == pytest.approx(gang_cost.communication)
    assert max(p.latency for p in parts) == pytest.approx(gang_cost.latency)


def test_member_on_the_slow_link_is_the_one_charged(h100):
    # Three members on one DGX node: two share GPUs 0-3 (NVLink), the third has GPU 4, also
    # NVSwitch-connected; then one member moves to another node of the same SU: every
    # member now pays the leaf hop (the collective crosses it).
    compiled = h100.compile()
    gang = Gang.uniform("g", 2, MemberRequest(gpus=2))
    inside = member_costs(compiled, gang, [member("g-0", 0, (0, 1)), member("g-1", 0, (2, 3))])
    assert [c.communication for c in inside] == [COST_NVLINK4, COST_NVLINK4]
    across = member_costs(compiled, gang, [member("g-0", 0, (0, 1)), member("g-1", 1, (0, 1))])
    assert [c.communication for c in across] == [COST_SAME_LEAF, COST_SAME_LEAF]
    assert [c.latency for c in across] == [LATENCY_COST_PER_LEVEL] * 2
