"""Fractional GPU shares: best-fit GPUs, packing, and the scorer's say over the GPU."""

import numpy as np
import pytest
from phalanx.scheduler.engine import place
from phalanx.scheduler.gang import Gang, MemberRequest
from phalanx.scheduler.placement import Placement, Unplaceable
from phalanx.scheduler.state import ClusterState
from phalanx.topology.presets import cluster_preset

from tests.placement_helpers import assert_valid_placement, fill_nodes, occupy


@pytest.fixture
def state() -> ClusterState:
    return ClusterState(cluster_preset("dgx-h100:4").compile())


def placed(gang: Gang, state: ClusterState, **kwargs) -> Placement:
    result = place(gang, state, **kwargs)
    assert isinstance(result, Placement), result
    assert_valid_placement(gang, result, state)
    return result


def test_shares_go_to_the_busiest_gpu_with_room(state):
    occupy(state, 2, (5,), gpu_milli=600)
    occupy(state, 2, (6,), gpu_milli=300)
    result = placed(Gang.uniform("f", 1, MemberRequest(gpu_milli=400)), state)
    assert (result.members[0].node_index, result.members[0].gpus) == (2, (5,))
    result = placed(Gang.uniform("f", 1, MemberRequest(gpu_milli=500)), state)
    assert (result.members[0].node_index, result.members[0].gpus) == (2, (6,))


def test_members_of_one_gang_share_a_gpu_when_they_fit(state):
    result = placed(Gang.uniform("f", 3, MemberRequest(gpu_milli=300)), state)
    assert {m.gpus for m in result.members} == {(0,)}
    assert result.level == "node"
    state.assign(result, 0.0)
    state.check_invariants()
    assert state.compiled.gpu_used_milli[result.members[0].node_index, 0] == 900


def test_shares_never_overfill_a_gpu(state):
    fill_nodes(state, range(3))
    free = state.compiled.free_gpus(3)
    for gpu in free:
        occupy(state, 3, (gpu,), gpu_milli=800)
    refused = place(Gang.uniform("f", 1, MemberRequest(gpu_milli=300)), state)
    # 8 x 200 milli-GPU are free, but no GPU holds 300: refused, and called fragmented
    assert isinstance(refused, Unplaceable) and refused.constraint == "fragmented"
    fits = placed(Gang.uniform("f", 8, MemberRequest(gpu_milli=200)), state)
    assert sorted(m.gpus[0] for m in fits.members) == list(range(8))


def test_fractional_gang_spreads_when_one_node_is_full(state):
    for node in range(4):
        for gpu in range(8):
            occupy(state, node, (gpu,), gpu_milli=900)
    result = placed(Gang.uniform("f", 24, MemberRequest(gpu_milli=100)), state)
    assert len(result.node_names) == 3  # room for 8 shares per node: the fewest nodes


class PickLastGpu:
    """A scorer that prefers emptier nodes and shares the highest-numbered free GPU."""

    name = "pick-last"

    def score(self, compiled, request, nodes):
        return compiled.free_gpu_count[nodes].astype(np.float64)

    def pick_gpu(self, compiled, request, node):
        used = compiled.gpu_used_milli[node]
        fits = np.flatnonzero(used + request.gpu_milli <= 1000)
        return int(fits[-1]) if fits.size else None


class BadPick(PickLastGpu):
    name = "bad-pick"

    def pick_gpu(self, compiled, request, node):
        return 99


def test_scorer_chooses_the_node_and_the_gpu(state):
    occupy(state, 0, (0,), gpu_milli=500)
    result = placed(Gang.uniform("f", 1, MemberRequest(gpu_milli=500)), state, scorer=PickLastGpu())
    assert result.members[0].node_index != 0
    assert result.members[0].gpus == (7,)
    default = placed(Gang.uniform("f", 1, MemberRequest(gpu_milli=500)), state)
    assert (default.members[0].node_index, default.members[0].gpus) == (0, (0,))


def test_an_invalid_scorer_pick_falls_back_to_best_fit(state):
    result = placed(Gang.uniform("f", 1, MemberRequest(gpu_milli=500)), state, scorer=BadPick())
    assert result.members[0].gpus == (0,)
