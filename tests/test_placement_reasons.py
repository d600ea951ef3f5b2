"""Bad gang specs get a GangSpecError naming the problem; unplaceable gangs get a reason that
names the failing constraint and level, never an exception."""

import dataclasses

import pytest
from phalanx.scheduler.engine import place
from phalanx.scheduler.gang import Gang, GangSpecError, Member, MemberRequest
from phalanx.scheduler.placement import Unplaceable
from phalanx.scheduler.state import ClusterState
from phalanx.topology.model import Cluster
from phalanx.topology.presets import cluster_preset, dgx_h100, rail_fat_tree

from tests.placement_helpers import fill_nodes, occupy

H100 = "NVIDIA-H100-80GB-HBM3"


@pytest.fixture
def state() -> ClusterState:
    return ClusterState(cluster_preset("superpod-h100:64").compile())


def unplaceable(gang: Gang, state: ClusterState) -> Unplaceable:
    result = place(gang, state)
    assert isinstance(result, Unplaceable), result
    assert result.gang == gang.name and result.reason
    return result


@pytest.mark.parametrize(
    ("gang", "message"),
    [
        (Gang("empty", ()), "zero members"),
        (Gang.uniform("huge", 1, MemberRequest(gpus=16)), "asks for gpus 16 but the largest node"),
        (Gang.uniform("cpu", 1, MemberRequest(cpu_milli=10**9)), "asks for cpu_milli"),
        (Gang.uniform("mem", 1, MemberRequest(gpus=1, memory_mib=10**9)), "asks for memory_mib"),
        (
            Gang.uniform("lvl", 2, MemberRequest(gpus=1), required_level="rack"),
            "'rack' is not a level",
        ),
        (
            Gang.uniform("pref", 2, MemberRequest(gpus=1), preferred_level="zone"),
            "preferred_level 'zone'",
        ),
        (
            Gang.uniform(
                "both", 2, MemberRequest(gpus=1), required_level="su", preferred_level="spine"
            ),
            "is above required_level",
        ),
        (
            Gang.uniform("model", 1, MemberRequest(gpus=1, gpu_products=("B300",))),
            "unknown GPU product 'B300'",
        ),
        (
            Gang.uniform("nvl", 4, MemberRequest(gpus=4), nvlink_group=4),
            "needs 16 GPUs in one NVLink domain",
        ),
        (Gang.uniform("frac", 2, MemberRequest(gpu_milli=500), nvlink_group=2), "whole GPUs"),
        (
            Gang(
                "mix",
                (Member("a", MemberRequest(gpus=1)), Member("b", MemberRequest(gpus=2))),
                nvlink_group=2,
            ),
            "mixes requests",
        ),
        (Gang.uniform("quorum", 2, MemberRequest(gpus=1), min_members=3), "min_members 3"),
        (Gang.uniform("both-kinds", 1, MemberRequest(gpus=1, gpu_milli=500)), "not both"),
    ],
)
def test_bad_specs_raise_a_clear_error(state, gang, message):
    before = state.compiled.mutable_state_bytes()
    with pytest.raises(GangSpecError, match=message):
        place(gang, state)
    assert state.compiled.mutable_state_bytes() == before


def test_gpu_request_on_a_cpu_only_cluster_is_a_spec_error():
    node = dataclasses.replace(dgx_h100("cpu0"), gpus=(), nics=())
    state = ClusterState(Cluster("cpus", [node], []).compile())
    with pytest.raises(GangSpecError, match="no GPU node"):
        place(Gang.uniform("g", 1, MemberRequest(gpus=1)), state)


def test_whole_cluster_short_of_gpus(state):
    fill_nodes(state, range(60))
    result = unplaceable(Gang.uniform("g", 8, MemberRequest(gpus=8)), state)
    assert (result.constraint, result.level) == ("capacity", "spine")
    assert "the cluster has 4 free nodes" in result.reason
    assert "needs 8 free nodes" in result.reason


def test_required_level_reason_names_the_best_domain(state):
    fill_nodes(state, range(21))  # su0: 11 free nodes, su1: 32
    fill_nodes(state, range(32, 50))  # su1: 14 free nodes
    gang = Gang.uniform("g", 16, MemberRequest(gpus=8, gpu_products=(H100,)), required_level="su")
    result = unplaceable(gang, state)
    assert (result.constraint, result.level) == ("required_level", "su")
    assert result.reason.startswith("required_level su: no su domain has 16 free nodes of 8 ")
    assert result.reason.endswith("best su has 14 free nodes")


def test_partial_members_report_room_not_nodes(state):
    fill_nodes(state, range(63))
    result = unplaceable(Gang.uniform("g", 5, MemberRequest(gpus=2)), state)
    assert "room for 4" in result.reason and "5 members of 2 GPUs" in result.reason


def test_selector_and_taint_failures_name_the_filter():
    nodes = [dataclasses.replace(dgx_h100(f"n{i}"), taints=("maintenance",)) for i in range(2)]
    nodes.append(dataclasses.replace(dgx_h100("n2"), labels={"pool": "a"}, taints=("maintenance",)))
    state = ClusterState(Cluster("c", nodes, rail_fat_tree(nodes, 4)).compile())
    selector = unplaceable(
        Gang.uniform("s", 1, MemberRequest(gpus=1, node_selector={"pool": "b"})), state
    )
    assert selector.constraint == "node_selector"
    assert "pool=b" in selector.reason
    taint = unplaceable(Gang.uniform("t", 1, MemberRequest(gpus=1)), state)
    assert taint.constraint == "taints"
    assert "0 also tolerate their taints" in taint.reason


def test_cpu_shortage_is_told_apart_from_gpu_shortage(state):
    for node in range(64):
        occupy(state, node, (), cpu_milli=200_000)
    result = unplaceable(Gang.uniform("g", 2, MemberRequest(gpus=1, cpu_milli=30_000)), state)
    assert result.constraint == "cpu_memory"
    assert "cpu or memory" in result.reason


def test_nvlink_shortage_is_told_apart_from_gpu_shortage(state):
    for node in range(64):
        occupy(state, node, (0, 1, 2, 3))
    gang = Gang.uniform("tp", 4, MemberRequest(gpus=2), nvlink_group=4)
    result = unplaceable(gang, state)
    assert (result.constraint, result.level) == ("nvlink_group", "node")
    assert "NVLink" in result.reason


def test_unknown_solver_is_a_value_error(state):
    with pytest.raises(ValueError, match="unknown solver 'best'"):
        place(Gang.uniform("g", 1, MemberRequest(gpus=1)), state, solver="best")


def test_kinds_that_fit_alone_but_not_together_are_a_packing_failure():
    state = ClusterState(cluster_preset("dgx-h100:1").compile())
    gang = Gang(
        "mixed",
        (
            Member("worker", MemberRequest(gpus=4, cpu_milli=200_000)),
            Member("launcher", MemberRequest(cpu_milli=100_000)),
        ),
    )
    result = unplaceable(gang, state)
    assert (result.constraint, result.level) == ("packing", "spine")
    assert "each fit" in result.reason
