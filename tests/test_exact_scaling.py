"""The exact path on large clusters: the symmetry reduction, the bound pruning, the
restriction when the model would be too large, and the time limit."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phalanx.bench.instances import BASE_SEED, make_instance
from phalanx.scheduler import exact_bounds
from phalanx.scheduler.engine import place
from phalanx.scheduler.exact import solve_detailed
from phalanx.scheduler.exact_problem import reduce_symmetric
from phalanx.scheduler.gang import Gang, MemberRequest
from phalanx.scheduler.placement import Placement
from phalanx.scheduler.state import ClusterState
from phalanx.topology.presets import cluster_preset

from tests.placement_helpers import assert_valid_placement, occupy

TIME_LIMIT_SLACK_S = 1.0
"""Model building and CP-SAT's own shutdown on top of the limit."""
HARD_INSTANCE = 21
"""An L40S instance that CP-SAT does not prove within a second."""
SUPERPOD = cluster_preset("superpod-h100:256").compile()


def test_identical_scalable_units_collapse_to_a_few_nodes():
    state = ClusterState(SUPERPOD)
    gang = Gang.uniform("g", 4, MemberRequest(gpus=8))
    answer = solve_detailed(gang, state)
    assert isinstance(answer.result, Placement) and answer.result.optimal
    assert answer.candidate_nodes == 256
    assert answer.model_nodes <= 16
    assert answer.result.level == "su"


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 255), min_size=1, max_size=8, unique=True))
def test_symmetry_reduction_keeps_every_node_of_a_hint(hint_nodes):
    nodes = np.arange(SUPERPOD.n_nodes)
    keys = dict.fromkeys(nodes.tolist(), 0)
    kept = reduce_symmetric(SUPERPOD, nodes, keys, budget=8, prefer=set(hint_nodes))
    assert set(hint_nodes) <= set(kept)
    assert len(kept) < SUPERPOD.n_nodes


def test_time_limit_is_respected_and_the_hint_kept():
    inst = make_instance(BASE_SEED + HARD_INSTANCE, HARD_INSTANCE)
    hint = place(inst.gang, inst.state, solver="fast")
    assert isinstance(hint, Placement)
    for limit_s in (0.2, 1.0):
        answer = solve_detailed(inst.gang, inst.state, time_limit_s=limit_s, hint=hint)
        assert answer.wall_s <= limit_s + TIME_LIMIT_SLACK_S
        assert isinstance(answer.result, Placement)
        assert answer.cost <= hint.cost.total + 1e-9
        assert answer.bound <= answer.cost + 1e-6
        assert_valid_placement(inst.gang, answer.result, inst.state)


def test_restricted_model_never_claims_optimality(monkeypatch):
    monkeypatch.setattr(exact_bounds, "MAX_MODEL_GPU_SETS", 1)
    state = ClusterState(cluster_preset("superpod-h100:64").compile())
    for node in range(0, 64, 3):
        occupy(state, node, [0, 1, 2])
    gang = Gang.uniform("g", 3, MemberRequest(gpus=4), comm_intensity=0.3)
    answer = solve_detailed(gang, state)
    assert answer.restricted and answer.bound_scope == "restricted"
    assert isinstance(answer.result, Placement) and not answer.result.optimal
    assert any("restricted" in note for note in answer.notes)
    assert_valid_placement(gang, answer.result, state)


def test_ten_thousand_empty_nodes():
    state = ClusterState(cluster_preset("superpod-h100:10000").compile())
    gang = Gang.uniform("g", 32, MemberRequest(gpus=8))
    hint = place(gang, state, solver="fast")
    answer = solve_detailed(gang, state, time_limit_s=2.0, hint=hint)
    assert isinstance(answer.result, Placement) and answer.result.optimal
    assert answer.wall_s <= 2.0 + TIME_LIMIT_SLACK_S
    assert answer.model_nodes < 100


@pytest.mark.slow
def test_ten_thousand_fragmented_nodes():
    state = ClusterState(cluster_preset("superpod-h100:10000").compile())
    rng = np.random.default_rng(7)
    for node in range(state.compiled.n_nodes):
        used = rng.choice(8, size=int(rng.integers(0, 9)), replace=False)
        if used.size:
            occupy(state, node, sorted(used.tolist()))
    for gang in (
        Gang.uniform("a", 16, MemberRequest(gpus=4)),
        Gang.uniform("b", 8, MemberRequest(gpus=1)),
        Gang.uniform("c", 32, MemberRequest(gpus=8)),
    ):
        hint = place(gang, state, solver="fast")
        answer = solve_detailed(gang, state, time_limit_s=2.0, hint=hint)
        assert isinstance(answer.result, Placement)
        assert answer.wall_s <= 2.0 + TIME_LIMIT_SLACK_S
        assert answer.cost <= hint.cost.total + 1e-9
        if answer.status == "OPTIMAL" and not answer.restricted:
            assert answer.result.optimal
