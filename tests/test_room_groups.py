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

from tests.placement_helpers import (
    RandomLedger,
    ledger_operations,
    mixed_state,
    one_member_requests,
)

TIES = 16


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


@settings(max_examples=60, deadline=None)
@given(
    kinds=st.text("hal", min_size=11, max_size=11).map(lambda k: "a" + k),
    su_nodes=st.sampled_from([2, 3, 12]),
    ops=st.lists(ledger_operations, max_size=25),
    request=one_member_requests,
)
def test_groups_pick_the_per_node_pass_nodes(kinds, su_nodes, ops, request):
    state = mixed_state(kinds, su_nodes)
    c = state.compiled
    scorer = get_scorer("topology")
    gang = Gang.uniform("one", 1, request)
    grouped(state)  # every later write must reach the groups
    same_result(gang, state, scorer)
    ledger = RandomLedger(c, seed=len(ops))
    for op in ops:
        ledger.apply(*op)
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
