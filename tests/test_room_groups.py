"""One member's topology-scored placement read from groups of nodes equals the per-node pass,
through any sequence of allocations and releases (``policies.scoring.room_groups``)."""

from __future__ import annotations

from unittest import mock

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from phalanx.policies.registry import get_scorer
from phalanx.policies.scoring.room_groups import ROOM_STATE
from phalanx.scheduler.cluster_index import cluster_index
from phalanx.scheduler.eligibility import static_mask
from phalanx.scheduler.engine import place
from phalanx.scheduler.free_state_buckets import BUILD_AFTER_QUERIES, free_state_buckets
from phalanx.scheduler.gang import Gang, GangSpecError, MemberRequest
from phalanx.scheduler.kernels import whole_member_capacity
from phalanx.scheduler.placement import Placement
from phalanx.scheduler.search import Search
from phalanx.scheduler.state import ClusterState
from phalanx.topology.model import Cluster, Node
from phalanx.topology.presets import dgx_a100, dgx_h100, hgx_pcie_l40s, rail_fat_tree

MAKERS = {"h": dgx_h100, "a": dgx_a100, "l": hgx_pcie_l40s}
A100 = "NVIDIA-A100-SXM4-80GB"
TIES = 16


def mixed_state(kinds: str, su_nodes: int) -> ClusterState:
    """Nodes of three link shapes in scalable units of ``su_nodes`` (several room classes)."""
    nodes: list[Node] = [MAKERS[k](f"{k}{i}") for i, k in enumerate(kinds)]
    return ClusterState(Cluster("mixed", nodes, rail_fat_tree(nodes, su_nodes)).compile())


def grouped(state: ClusterState) -> None:
    c = state.compiled
    for _ in range(BUILD_AFTER_QUERIES):
        groups = free_state_buckets(c, cluster_index(c), ROOM_STATE)
    assert groups is not None


def outcome(placer, gang: Gang, state: ClusterState, scorer):
    try:
        return placer(gang, state, scorer=scorer)
    except GangSpecError as exc:
        return str(exc)


def full_pass(gang: Gang, state: ClusterState, scorer):
    with mock.patch.object(Search, "_single_member_by_groups", return_value=None):
        return place(gang, state, scorer=scorer)


def same_result(gang: Gang, state: ClusterState, scorer) -> None:
    fast = outcome(place, gang, state, scorer)
    full = outcome(full_pass, gang, state, scorer)
    if isinstance(full, Placement):
        assert isinstance(fast, Placement)
        assert fast.members == full.members
        assert fast.cost == full.cost
    else:
        assert fast == full or not isinstance(fast, Placement)


def same_best_nodes(request: MemberRequest, state: ClusterState, scorer) -> None:
    """The grouped pass returns the per-node pass's nodes, where both answer."""
    c = state.compiled
    eligible = static_mask(c, cluster_index(c), request)
    units = whole_member_capacity(
        eligible,
        c.free_gpu_count,
        c.cpu_free_milli,
        c.memory_free_mib,
        request.gpus,
        request.cpu_milli,
        request.memory_mib,
        1 << 30,
    )
    per_node = scorer.best_nodes(c, request, units, 1, TIES)
    if per_node is None:
        scorer.score(c, request, np.flatnonzero(units >= 1))  # fills the link table
        per_node = scorer.best_nodes(c, request, units, 1, TIES)
    in_groups = scorer.best_nodes_in_groups(c, request, eligible, TIES)
    if per_node is not None and in_groups is not None:
        assert in_groups.tolist() == per_node.tolist()


requests = st.builds(
    MemberRequest,
    gpus=st.integers(1, 8),
    cpu_milli=st.sampled_from([0, 1000, 64_000, 200_000]),
    memory_mib=st.sampled_from([0, 1024, 900_000]),
    gpu_products=st.sampled_from([(), (A100,)]),
)
operation = st.tuples(
    st.sampled_from(["take", "share", "release"]),
    st.integers(0, 11),
    st.integers(1, 8),
    st.sampled_from([0, 8000, 100_000]),
)


@settings(max_examples=60, deadline=None)
@given(
    kinds=st.text("hal", min_size=11, max_size=11).map(lambda k: "a" + k),
    su_nodes=st.sampled_from([2, 3, 12]),
    ops=st.lists(operation, max_size=25),
    request=requests,
)
def test_groups_pick_the_per_node_pass_nodes(kinds, su_nodes, ops, request):
    state = mixed_state(kinds, su_nodes)
    c = state.compiled
    scorer = get_scorer("topology")
    gang = Gang.uniform("one", 1, request)
    grouped(state)  # every later write must reach the groups
    same_result(gang, state, scorer)
    rng = np.random.default_rng(len(ops))
    held: list[tuple[int, tuple[int, ...], int, int]] = []
    for kind, node, count, cpu in ops:
        if kind == "release" and held:
            n, gpus, milli, cpu_taken = held.pop(int(rng.integers(len(held))))
            c.release(n, gpus, milli, cpu_taken)
        elif kind != "release":
            free = np.flatnonzero(c.gpu_used_milli[node] == 0) if kind == "take" else None
            if kind == "take" and free is not None and free.size >= count:
                gpus = tuple(int(g) for g in rng.choice(free, size=count, replace=False))
                milli = 1000
            else:
                room = np.flatnonzero(c.gpu_usable[node] & (c.gpu_used_milli[node] <= 750))
                if not room.size:
                    continue
                gpus, milli = (int(room[0]),), 250
            if cpu > c.cpu_free_milli[node]:
                cpu = 0
            c.allocate(node, gpus, milli, cpu)
            held.append((node, gpus, milli, cpu))
        same_result(gang, state, scorer)
        same_best_nodes(request, state, scorer)


def test_the_grouped_pass_serves_one_member_once_grouped():
    """Past the first questions, one scored member is placed from the groups (the search's
    capacity pass and the per-node ranking are not called)."""
    state = mixed_state("hhhhaaaallll", 4)
    scorer = get_scorer("topology")
    gang = Gang.uniform("one", 1, MemberRequest(gpus=2))
    grouped(state)
    with mock.patch.object(Search, "_capacities", side_effect=AssertionError("read every node")):
        placed = place(gang, state, scorer=scorer)
    assert isinstance(placed, Placement)
    same_result(gang, state, scorer)


def test_a_nan_score_leaves_the_choice_to_the_per_node_pass():
    state = mixed_state("hhhhaaaallll", 4)
    scorer = get_scorer("topology")
    request = MemberRequest(gpus=2)
    grouped(state)
    c = state.compiled
    known, link = scorer._table(c, request.gpus)
    known[:] = True
    link[:] = np.nan
    eligible = static_mask(c, cluster_index(c), request)
    assert scorer.best_nodes_in_groups(c, request, eligible, TIES) is None


def test_nodes_without_the_cpu_are_passed_over_in_a_group():
    """The top group's lowest nodes lack the cpu: the next nodes of the group are taken, as
    the per-node pass (which reads each node's capacity) takes them."""
    state = mixed_state("hhhhhhhh", 8)
    scorer = get_scorer("topology")
    c = state.compiled
    request = MemberRequest(gpus=1, cpu_milli=8000)
    grouped(state)
    before = place(Gang.uniform("one", 1, request), state, scorer=scorer)
    assert isinstance(before, Placement)
    first = before.members[0].node_index
    c.allocate(first, (), 0, int(c.cpu_free_milli[first]) - 1000)  # its cpu, not its GPUs
    gang = Gang.uniform("one", 1, request)
    after = place(gang, state, scorer=scorer)
    assert isinstance(after, Placement) and after.members[0].node_index != first
    same_result(gang, state, scorer)
    same_best_nodes(request, state, scorer)
