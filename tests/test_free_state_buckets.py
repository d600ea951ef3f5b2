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
from phalanx.topology.presets import (
    cluster_preset,
)

from tests.placement_helpers import (
    RandomLedger,
    ledger_operations,
    mixed_state,
    one_member_requests,
)


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


@settings(max_examples=60, deadline=None)
@given(
    kinds=st.text("hal", min_size=11, max_size=11).map(lambda k: "a" + k),  # model filters fit
    ops=st.lists(ledger_operations, max_size=25),
    request=one_member_requests,
    comm=st.sampled_from([0.0, 1.0]),
)
def test_groups_pick_the_full_pass_node(kinds, ops, request, comm):
    state = mixed_state(kinds)
    c = state.compiled
    gang = Gang.uniform("one", 1, request, comm_intensity=comm)
    grouped(state)  # every later write must reach the groups
    same_result(gang, state)
    ledger = RandomLedger(c, seed=len(ops))
    for op in ops:
        ledger.apply(*op)
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
