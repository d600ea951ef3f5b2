"""One member's placement from the nodes grouped by free state equals the full pass over every
node, through any sequence of allocations and releases (``scheduler.free_state_buckets``)."""

from __future__ import annotations

from unittest import mock

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from phalanx.scheduler.cluster_index import cluster_index
from phalanx.scheduler.engine import place
from phalanx.scheduler.free_state_buckets import (
    _BUCKETS,
    BUILD_AFTER_QUERIES,
    FREE_STATE,
    FreeStateBuckets,
    free_state_buckets,
)
from phalanx.scheduler.gang import Gang, GangSpecError, MemberRequest
from phalanx.scheduler.placement import Placement
from phalanx.scheduler.search import Search
from phalanx.scheduler.state import ClusterState
from phalanx.topology.model import Cluster, Node
from phalanx.topology.presets import (
    cluster_preset,
    dgx_a100,
    dgx_h100,
    hgx_pcie_l40s,
    rail_fat_tree,
)

MAKERS = {"h": dgx_h100, "a": dgx_a100, "l": hgx_pcie_l40s}
A100 = "NVIDIA-A100-SXM4-80GB"


def mixed_state(kinds: str) -> ClusterState:
    nodes: list[Node] = [MAKERS[k](f"{k}{i}") for i, k in enumerate(kinds)]
    return ClusterState(Cluster("mixed", nodes, rail_fat_tree(nodes, 4)).compile())


def full_pass(gang: Gang, state: ClusterState):
    """The placement the search finds reading every node (the groups switched off)."""
    with mock.patch.object(Search, "_single_member_by_groups", return_value=None):
        return place(gang, state)


def grouped(state: ClusterState) -> None:
    """Ask often enough that the state's nodes are grouped (the first questions read every
    node)."""
    c = state.compiled
    for _ in range(BUILD_AFTER_QUERIES):
        groups = free_state_buckets(c, cluster_index(c))
    assert groups is not None


def outcome(placer, gang: Gang, state: ClusterState):
    """The placement, the failure, or the refusal of a gang this cluster can never hold."""
    try:
        return placer(gang, state)
    except GangSpecError as exc:
        return str(exc)


def same_result(gang: Gang, state: ClusterState) -> None:
    fast, full = outcome(place, gang, state), outcome(full_pass, gang, state)
    if isinstance(full, str):
        assert fast == full
    elif isinstance(full, Placement):
        assert isinstance(fast, Placement)
        assert fast.members == full.members
        assert fast.cost == full.cost
    else:
        assert not isinstance(fast, Placement)


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
    kinds=st.text("hal", min_size=11, max_size=11).map(lambda k: "a" + k),  # model filters fit
    ops=st.lists(operation, max_size=25),
    request=requests,
    comm=st.sampled_from([0.0, 1.0]),
)
def test_groups_pick_the_full_pass_node(kinds, ops, request, comm):
    state = mixed_state(kinds)
    c = state.compiled
    gang = Gang.uniform("one", 1, request, comm_intensity=comm)
    grouped(state)  # every later write must reach the groups
    same_result(gang, state)
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
        same_result(gang, state)


def test_what_if_copies_and_emptied_clusters_have_their_own_groups():
    state = mixed_state("hhhhaaaallll")
    gang = Gang.uniform("one", 1, MemberRequest(gpus=2))
    grouped(state)
    first = place(gang, state)
    snapshot = state.snapshot()
    snapshot.reserve(first, 0.0)
    grouped(snapshot)
    same_result(gang, snapshot)
    same_result(gang, state)  # the live ledger still has the node the snapshot took
    assert place(gang, state).members == first.members
    without = state.without_nodes(np.array([first.members[0].node_index]))
    grouped(without)
    same_result(gang, without)
    emptied = ClusterState(state.compiled.emptied())
    grouped(emptied)
    same_result(gang, emptied)


def test_a_state_asked_once_is_not_grouped():
    """A what-if copy asked once (each of a preemption's victim searches) reads every node
    rather than pay for grouping them."""
    state = mixed_state("hhhhaaaallll")
    gang = Gang.uniform("one", 1, MemberRequest(gpus=2))
    copy = state.copy()
    place(gang, copy)
    assert not isinstance(
        _BUCKETS[(id(copy.compiled.free_gpu_mask), FREE_STATE.name)], FreeStateBuckets
    )
    same_result(gang, copy)


def test_a_restarted_change_log_regroups_from_the_arrays():
    state = ClusterState(cluster_preset("dgx-h100:8").compile())
    c = state.compiled
    gang = Gang.uniform("one", 1, MemberRequest(gpus=1))
    grouped(state)
    groups = free_state_buckets(c, cluster_index(c))
    assert groups is not None
    for _ in range(5000):  # past the log's bound: the ledger starts a new log
        c.allocate(3, (0,), 1000)
        c.release(3, (0,), 1000)
    c.allocate(5, (1, 2, 3, 4, 5, 6, 7), 1000)
    assert c.changed_nodes is not groups.log
    same_result(gang, state)
    assert place(gang, state).members[0].node_index == 5


def test_new_groups_past_the_rows_regroup():
    state = ClusterState(cluster_preset("dgx-h100:64").compile())
    c = state.compiled
    gang = Gang.uniform("one", 1, MemberRequest(gpus=1))
    grouped(state)
    for node in range(64):  # a new free state per node: more groups than the first rows
        c.allocate(node, tuple(range(node % 8)), 1000)
        c.allocate(node, (7,), 10 + node)
        same_result(gang, state)
