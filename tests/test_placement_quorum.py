"""min_members: the whole gang first, else its first min_members members."""

from phalanx.scheduler.engine import place
from phalanx.scheduler.gang import Gang, MemberRequest
from phalanx.scheduler.placement import Placement, Unplaceable
from phalanx.scheduler.state import ClusterState
from phalanx.topology.presets import cluster_preset

from tests.placement_helpers import assert_valid_placement, fill_nodes


def state_with_free_nodes(free: int) -> ClusterState:
    state = ClusterState(cluster_preset("superpod-h100:16").compile())
    fill_nodes(state, range(16 - free))
    return state


def test_whole_gang_is_placed_when_it_fits():
    gang = Gang.uniform("g", 6, MemberRequest(gpus=8), min_members=4)
    result = place(gang, state_with_free_nodes(8))
    assert isinstance(result, Placement) and len(result.members) == 6


def test_quorum_is_placed_when_the_whole_gang_does_not_fit():
    state = state_with_free_nodes(5)
    gang = Gang.uniform("g", 6, MemberRequest(gpus=8), min_members=4)
    result = place(gang, state)
    assert isinstance(result, Placement)
    assert [m.member for m in result.members] == ["g-0", "g-1", "g-2", "g-3"]
    assert_valid_placement(gang, result, state)


def test_quorum_failure_gives_both_reasons():
    gang = Gang.uniform("g", 6, MemberRequest(gpus=8), min_members=4)
    result = place(gang, state_with_free_nodes(3))
    assert isinstance(result, Unplaceable)
    assert "needs 6 free nodes" in result.reason
    assert "the quorum of 4 members does not fit either" in result.reason
    assert "needs 4 free nodes" in result.reason


def test_quorum_keeps_nvlink_groups_whole():
    state = state_with_free_nodes(1)
    gang = Gang.uniform("tp", 8, MemberRequest(gpus=2), nvlink_group=4, min_members=4)
    result = place(gang, state)
    assert isinstance(result, Placement) and len(result.members) == 4
    assert len(result.node_names) == 1
