"""Topology constraints of the fast path: best fit, levels, NVLink groups, GPU models, node
selectors, taints, cpu/memory, and where the GPUs go inside a node."""

import dataclasses

import pytest
from phalanx.scheduler.engine import place
from phalanx.scheduler.gang import Gang, Member, MemberRequest
from phalanx.scheduler.placement import Placement, Unplaceable
from phalanx.scheduler.state import ClusterState
from phalanx.topology.costs import COST_NVLINK5
from phalanx.topology.model import Cluster, NvlinkKind
from phalanx.topology.presets import cluster_preset, dgx_h100, hgx_pcie_l40s, rail_fat_tree

from tests.placement_helpers import assert_valid_placement, fill_nodes, occupy
from tests.topology_strategies import make_node

H100 = "NVIDIA-H100-80GB-HBM3"
L40S = "NVIDIA-L40S"


def h100_state(nodes: int = 64) -> ClusterState:
    return ClusterState(cluster_preset(f"superpod-h100:{nodes}").compile())


def placed(gang: Gang, state: ClusterState, **kwargs) -> Placement:
    result = place(gang, state, **kwargs)
    assert isinstance(result, Placement), result
    assert_valid_placement(gang, result, state)
    return result


def mixed_state() -> ClusterState:
    """Four H100 nodes (labelled pool=train) and four L40S nodes (pool=infer, tainted)."""
    nodes = [dataclasses.replace(dgx_h100(f"h{i}"), labels={"pool": "train"}) for i in range(4)]
    nodes += [
        dataclasses.replace(
            hgx_pcie_l40s(f"l{i}"), labels={"pool": "infer"}, taints=("inference-only",)
        )
        for i in range(4)
    ]
    return ClusterState(Cluster("mixed", nodes, rail_fat_tree(nodes, su_nodes=4)).compile())


def test_single_member_goes_to_the_node_it_fills_best():
    state = h100_state(8)
    occupy(state, 3, range(6))
    occupy(state, 5, range(4))
    two = placed(Gang.uniform("two", 1, MemberRequest(gpus=2)), state)
    assert two.members[0].node_index == 3
    four = placed(Gang.uniform("four", 1, MemberRequest(gpus=4)), state)
    assert four.members[0].node_index == 5
    assert four.cost.fragmentation == 0.0


def test_gang_takes_the_smallest_level_and_the_best_fitting_domain():
    state = h100_state(64)
    fill_nodes(state, range(15))  # su0 keeps 17 free nodes, su1 all 32
    gang = Gang.uniform("g", 16, MemberRequest(gpus=8))
    result = placed(gang, state)
    assert result.level == "su"
    assert {m.node_index // 32 for m in result.members} == {0}
    fill_nodes(state, range(15, 17))  # su0 now has 15 free: only su1 fits
    result = placed(gang, state)
    assert {m.node_index // 32 for m in result.members} == {1}


def test_small_gang_stays_on_one_node():
    result = placed(Gang.uniform("g", 2, MemberRequest(gpus=4)), h100_state(8))
    assert result.level == "node"
    assert len(result.node_names) == 1


def test_required_level_holds_or_names_the_level():
    state = h100_state(64)
    ok = placed(Gang.uniform("ok", 32, MemberRequest(gpus=8), required_level="su"), state)
    assert ok.level == "su"
    too_big = place(Gang.uniform("big", 40, MemberRequest(gpus=8), required_level="su"), state)
    assert isinstance(too_big, Unplaceable)
    assert (too_big.constraint, too_big.level) == ("required_level", "su")
    assert "no su domain has 40 free nodes" in too_big.reason
    assert "best su has 32" in too_big.reason


def test_required_node_level_keeps_members_together():
    state = h100_state(4)
    occupy(state, 0, range(4))
    result = placed(Gang.uniform("g", 2, MemberRequest(gpus=4), required_level="node"), state)
    assert len(result.node_names) == 1
    assert result.members[0].node_index != 0
    refused = place(Gang.uniform("h", 3, MemberRequest(gpus=4), required_level="node"), state)
    assert isinstance(refused, Unplaceable) and refused.level == "node"


def test_preferred_level_widens_one_level_at_a_time():
    state = h100_state(64)
    result = placed(Gang.uniform("g", 40, MemberRequest(gpus=8), preferred_level="su"), state)
    assert result.level == "spine"
    # 32 + 8: the fewest su domains, one of them whole
    per_su = sorted(sum(1 for m in result.members if m.node_index // 32 == su) for su in (0, 1))
    assert per_su == [8, 32]


def test_nvlink_groups_stay_inside_one_nvswitch_node():
    state = h100_state(8)
    for node in range(6):
        occupy(state, node, (0, 1))  # six nodes with 6 free GPUs, two whole nodes
    gang = Gang.uniform("tp", 8, MemberRequest(gpus=2), nvlink_group=4)
    result = placed(gang, state)
    assert {m.node_index for m in result.members[:4]} == {6}
    assert {m.node_index for m in result.members[4:]} == {7}
    ungrouped = placed(Gang.uniform("dp", 8, MemberRequest(gpus=2)), state)
    assert ungrouped.level == "su"


def test_nvlink_groups_span_trays_of_one_nvl72_clique():
    state = ClusterState(cluster_preset("nvl72:36").compile())
    fill_nodes(state, range(10))  # clique0 keeps 8 trays (2 groups), clique1 18 (4 groups)
    three = placed(Gang.uniform("tp3", 12, MemberRequest(gpus=4), nvlink_group=4), state)
    assert three.level == "clique"
    assert {m.node_index // 18 for m in three.members} == {1}
    assert three.cost.communication == pytest.approx(COST_NVLINK5)
    five = placed(Gang.uniform("tp5", 20, MemberRequest(gpus=4), nvlink_group=4), state)
    assert five.level == "su"
    for start in range(0, 20, 4):
        assert len({m.node_index // 18 for m in five.members[start : start + 4]}) == 1


def test_nvlink_groups_use_bridge_pairs_on_pcie_cards():
    shape = {
        "gpus": 4,
        "product": "GPU-A",
        "nvlink": NvlinkKind.BRIDGE,
        "nvlink_generation": 4,
        "pcie_generation": 4,
        "p2p": True,
        "numa_nodes": 1,
        "gpus_per_switch": 2,
        "mig": (False,) * 4,
        "healthy": (True,) * 4,
        "network_gbps_per_gpu": 25.0,
        "cpu_milli": 32000,
        "memory_mib": 65536,
    }
    node = make_node("b0", shape, {})
    state = ClusterState(Cluster("bridges", [node], []).compile())
    gang = Gang.uniform("pair", 2, MemberRequest(gpus=1), nvlink_group=2)
    occupy(state, 0, (0,))
    result = placed(gang, state)
    assert sorted(g for m in result.members for g in m.gpus) == [2, 3]
    occupy(state, 0, (2,))
    refused = place(gang, state)
    assert isinstance(refused, Unplaceable)
    assert refused.constraint == "nvlink_group"


def test_gpu_products_pick_the_node_type():
    state = mixed_state()
    tolerant = MemberRequest(gpus=2, gpu_products=(L40S,), tolerations=("inference-only",))
    result = placed(Gang.uniform("l", 1, tolerant), state)
    assert result.members[0].node.startswith("l")
    either = MemberRequest(gpus=8, gpu_products=(H100, L40S), tolerations=("inference-only",))
    fill_nodes(state, range(4))
    result = placed(Gang.uniform("any", 1, either), state)
    assert result.members[0].node.startswith("l")


def test_taints_need_tolerations_and_selectors_need_labels():
    state = mixed_state()
    fill_nodes(state, range(4))  # the untainted H100 nodes are full
    refused = place(Gang.uniform("t", 1, MemberRequest(gpus=1)), state)
    assert isinstance(refused, Unplaceable)
    tolerated = MemberRequest(gpus=1, tolerations=("inference-only",))
    assert placed(Gang.uniform("t", 1, tolerated), state).members[0].node.startswith("l")
    wrong_pool = MemberRequest(
        gpus=1, node_selector={"pool": "train"}, tolerations=("inference-only",)
    )
    refused = place(Gang.uniform("s", 1, wrong_pool), state)
    assert isinstance(refused, Unplaceable)


def test_cpu_and_memory_bound_members_per_node():
    state = h100_state(4)
    fat = MemberRequest(gpus=1, cpu_milli=150_000)  # a DGX H100 has 224 cores
    result = placed(Gang.uniform("fat", 3, fat), state)
    assert len(result.node_names) == 3
    cpu_only = MemberRequest(cpu_milli=1000, memory_mib=1024)
    result = placed(Gang.uniform("cpu", 4, cpu_only), state)
    assert all(m.gpus == () for m in result.members)


def test_mixed_member_kinds_place_together():
    launcher = Member("launcher", MemberRequest(cpu_milli=4000, memory_mib=8192))
    workers = tuple(Member(f"w{i}", MemberRequest(gpus=8, cpu_milli=100_000)) for i in range(3))
    gang = Gang("mpi", (launcher, *workers))
    result = placed(gang, h100_state(8))
    assert result.members[0].member == "launcher"
    assert result.level == "su"
    assert result.cost.misalignment == 0.0  # the launcher uses no GPU rail


def test_gpu_choice_follows_the_pcie_tree():
    state = ClusterState(cluster_preset("l40s-cluster:1").compile())
    pair = placed(Gang.uniform("p", 1, MemberRequest(gpus=2)), state)
    assert pair.members[0].gpus in {(0, 1), (2, 3), (4, 5), (6, 7)}
    quad = placed(Gang.uniform("q", 1, MemberRequest(gpus=4)), state)
    assert quad.members[0].gpus in {(0, 1, 2, 3), (4, 5, 6, 7)}
    occupy(state, 0, (3, 4, 5, 6, 7))
    single = placed(Gang.uniform("s", 1, MemberRequest(gpus=1)), state)
    assert single.members[0].gpus == (2,)  # leaves 0-1, a switch pair, rather than 1-2


def test_gpu_choice_keeps_members_on_one_socket():
    state = h100_state(1)
    occupy(state, 0, (0,))
    result = placed(Gang.uniform("g", 1, MemberRequest(gpus=4)), state)
    assert result.members[0].gpus == (4, 5, 6, 7)
    assert result.cost.misalignment == 0.0


def test_multi_node_members_share_rails():
    state = h100_state(4)
    occupy(state, 0, (0, 1, 2, 3))
    alone = MemberRequest(gpus=4, cpu_milli=150_000)  # one member per node
    result = placed(Gang.uniform("r", 2, alone), state)
    assert [m.node_index for m in result.members] == [0, 1]
    assert result.members[1].gpus == (4, 5, 6, 7)  # the rails member 0 had to take
    assert result.cost.misalignment == 0.0


class PreferHighIndex:
    """A scorer that likes higher node indices (the core must follow it, not best fit)."""

    name = "high-index"

    def score(self, compiled, request, nodes):
        return nodes.astype(float)

    def pick_gpu(self, compiled, request, node):
        return None


def test_scorer_orders_nodes_inside_the_chosen_domain():
    state = h100_state(8)
    gang = Gang.uniform("g", 3, MemberRequest(gpus=8))
    assert [m.node_index for m in placed(gang, state).members] == [0, 1, 2]
    scored = placed(gang, state, scorer=PreferHighIndex())
    assert [m.node_index for m in scored.members] == [7, 6, 5]
    single = placed(Gang.uniform("s", 1, MemberRequest(gpus=1)), state, scorer=PreferHighIndex())
    assert single.members[0].node_index == 7


def test_nodes_beyond_the_choice_tables_use_direct_search():
    """A 16-GPU NVSwitch node (DGX-2 class) is past the 8-GPU tables: sets are searched
    directly, and a gang's members still share one socket each."""
    shape = {
        "gpus": 16,
        "product": "GPU-A",
        "nvlink": NvlinkKind.NVSWITCH,
        "nvlink_generation": 3,
        "pcie_generation": 4,
        "p2p": True,
        "numa_nodes": 2,
        "gpus_per_switch": 2,
        "mig": (False,) * 16,
        "healthy": (True,) * 16,
        "network_gbps_per_gpu": 25.0,
        "cpu_milli": 96_000,
        "memory_mib": 1 << 20,
    }
    state = ClusterState(Cluster("dgx2", [make_node("d0", shape, {})], []).compile())
    occupy(state, 0, (0, 1, 2))
    result = placed(Gang.uniform("g", 3, MemberRequest(gpus=4), nvlink_group=3), state)
    assert result.cost.misalignment == 0.0
    assert all(len({g // 8 for g in m.gpus}) == 1 for m in result.members)
