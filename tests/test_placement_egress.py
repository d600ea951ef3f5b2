"""Network egress in the fast path: a multi-node gang pays its dearest node's egress on every
link, so the search tries the cheapest-egress nodes first and weighs a single slow node
against several fast ones, as the exact path does."""

import dataclasses

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phalanx.scheduler.engine import place
from phalanx.scheduler.gang import Gang, MemberRequest
from phalanx.scheduler.placement import Placement
from phalanx.scheduler.state import ClusterState
from phalanx.topology.model import Cluster, Node
from phalanx.topology.presets import dgx_a100, dgx_h100, hgx_pcie_l40s, rail_fat_tree

from tests.placement_helpers import assert_valid_placement, fill_nodes, occupy

H100 = "NVIDIA-H100-80GB-HBM3"
A100 = "NVIDIA-A100-SXM4-80GB"
MAKERS = {"h": dgx_h100, "a": dgx_a100, "l": hgx_pcie_l40s}
COST_TOLERANCE = 1e-9


def state_of(kinds: str, su_nodes: int, oversubscription: float = 1.0) -> ClusterState:
    """Nodes named by kind letter and position ("hhll": h0 h1 l2 l3), on a rail fat tree."""
    nodes: list[Node] = [MAKERS[k](f"{k}{i}") for i, k in enumerate(kinds)]
    levels = rail_fat_tree(nodes, su_nodes, oversubscription=oversubscription)
    return ClusterState(Cluster("egress", nodes, levels).compile())


def placed(gang: Gang, state: ClusterState, **kwargs) -> Placement:
    result = place(gang, state, **kwargs)
    assert isinstance(result, Placement), result
    assert_valid_placement(gang, result, state)
    return result


def kinds_used(result: Placement) -> set[str]:
    return {m.node[0] for m in result.members}


def test_fast_nodes_across_scalable_units_beat_a_unit_with_a_slow_node():
    # su0: two free H100 and two free L40S; su1: two free H100 and two full L40S
    state = state_of("hhllhhll", su_nodes=4)
    fill_nodes(state, [6, 7])
    gang = Gang.uniform("g", 4, MemberRequest(gpus=8))
    result = placed(gang, state)
    assert kinds_used(result) == {"h"}
    assert result.level == "spine"
    assert result.cost.communication == 11.0  # the spine, not the L40S egress (72)
    exact = placed(gang, state, solver="exact")
    assert result.cost.total <= exact.cost.total + COST_TOLERANCE


def test_a_preferred_level_keeps_the_unit_even_with_a_slow_node():
    state = state_of("hhllhhll", su_nodes=4)
    fill_nodes(state, [6, 7])
    gang = Gang.uniform("g", 4, MemberRequest(gpus=8), preferred_level="su")
    result = placed(gang, state)
    assert result.level == "su"
    assert kinds_used(result) == {"h", "l"}


def test_middle_egress_tier_wins_when_the_fast_nodes_sit_behind_an_oversubscribed_core():
    # H100s only together at the 4:1 spine (44); with an A100 a unit costs max(10, 18) = 18
    state = state_of("hallhall", su_nodes=4, oversubscription=4.0)
    gang = Gang.uniform("g", 2, MemberRequest(gpus=8))
    result = placed(gang, state)
    assert "a" in kinds_used(result) and "l" not in kinds_used(result)
    assert result.level == "su"
    assert result.cost.communication == 18.0


def test_two_fast_nodes_beat_one_slow_node_split_across_sockets():
    # the L40S node holds the gang alone but across its sockets (30); two H100 halves cost 10
    state = state_of("hhl", su_nodes=4)
    occupy(state, 0, range(4))
    occupy(state, 1, range(4))
    gang = Gang.uniform("g", 2, MemberRequest(gpus=4))
    result = placed(gang, state)
    assert kinds_used(result) == {"h"}
    assert result.cost.communication == 10.0
    exact = placed(gang, state, solver="exact")
    assert result.cost.total <= exact.cost.total + COST_TOLERANCE


def test_without_communication_egress_does_not_matter():
    state = state_of("hhllhhll", su_nodes=4)
    fill_nodes(state, [6, 7])
    gang = Gang.uniform("g", 4, MemberRequest(gpus=8), comm_intensity=0.0)
    result = placed(gang, state)
    assert result.level == "su"
    assert result.cost.communication == 0.0


@st.composite
def mixed_clusters(draw):
    """Eight nodes with at least one H100 and one A100, partly used, and a whole-GPU gang."""
    kinds = draw(st.lists(st.sampled_from("hal"), min_size=6, max_size=6))
    state = state_of(
        "h" + "".join(kinds) + "a",
        su_nodes=draw(st.sampled_from([2, 4])),
        oversubscription=draw(st.sampled_from([1.0, 2.0, 4.0])),
    )
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    for node in range(state.compiled.n_nodes):
        used = int(rng.integers(0, 8))
        if used:
            occupy(state, node, sorted(rng.choice(8, size=used, replace=False).tolist()))
    request = MemberRequest(gpus=draw(st.sampled_from([1, 2, 4, 8])))
    members = draw(st.integers(2, 5))
    intensity = draw(st.sampled_from([0.2, 1.0]))
    return state, request, members, intensity


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mixed_clusters(), st.sampled_from([(H100,), (H100, A100)]))
def test_all_nodes_never_cost_more_than_the_cheapest_egress_ones(case, products):
    """Restricting a gang to the cheapest-egress node types can only remove options the
    search already weighs: the unrestricted gang is never placed at a higher cost."""
    state, request, members, intensity = case
    anywhere = place(Gang.uniform("any", members, request, comm_intensity=intensity), state)
    limited = dataclasses.replace(request, gpu_products=products)
    cheap = place(Gang.uniform("cheap", members, limited, comm_intensity=intensity), state)
    if isinstance(cheap, Placement):
        assert isinstance(anywhere, Placement)
        assert anywhere.cost.total <= cheap.cost.total + COST_TOLERANCE
