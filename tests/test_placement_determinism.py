"""The engine is pure and deterministic, prices its answer with the shared cost function, and
on random clusters and gangs either places validly or explains why not."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phalanx.scheduler.cost import placement_cost
from phalanx.scheduler.engine import place
from phalanx.scheduler.gang import Gang, GangSpecError, MemberRequest
from phalanx.scheduler.placement import Placement, Unplaceable
from phalanx.scheduler.state import ClusterState
from phalanx.topology.presets import cluster_preset

from tests.placement_helpers import assert_valid_placement, half_busy, occupy
from tests.topology_strategies import clusters


def busy_state() -> ClusterState:
    state = ClusterState(cluster_preset("superpod-h100:96").compile())
    rng = np.random.default_rng(3)
    for node in range(96):
        used = int(rng.integers(0, 9))
        if used:
            occupy(state, node, sorted(rng.choice(8, size=used, replace=False).tolist()))
    return state


GANGS = [
    Gang.uniform("one", 1, MemberRequest(gpus=3)),
    Gang.uniform("pair", 2, MemberRequest(gpus=4)),
    Gang.uniform("wide", 8, MemberRequest(gpus=8)),
    Gang.uniform("tp", 8, MemberRequest(gpus=2), nvlink_group=4),
    Gang.uniform("frac", 5, MemberRequest(gpu_milli=250)),
]


def test_place_is_pure_and_deterministic():
    state = busy_state()
    before = state.compiled.mutable_state_bytes()
    holdings = dict(state.holdings)
    for gang in GANGS:
        first = place(gang, state)
        assert place(gang, state) == first
        assert place(gang, state.copy()) == first
        assert state.compiled.mutable_state_bytes() == before
        assert state.holdings == holdings


def test_reported_cost_is_the_shared_cost_function():
    state = busy_state()
    for gang in GANGS:
        result = place(gang, state)
        assert isinstance(result, Placement)
        assert result.cost == placement_cost(state.compiled, gang, result.members)
        assert_valid_placement(gang, result, state)


def test_placements_can_be_taken_one_after_another():
    state = busy_state()
    for round_ in range(3):
        for gang in GANGS:
            named = Gang(f"{gang.name}-{round_}", gang.members, nvlink_group=gang.nvlink_group)
            result = place(named, state)
            if isinstance(result, Placement):
                state.assign(result, 0.0)
    state.check_invariants()


@st.composite
def gangs(draw, level_names):
    count = draw(st.integers(1, 6))
    kind = draw(st.sampled_from(["whole", "fractional", "cpu"]))
    request = MemberRequest(
        gpus=draw(st.integers(1, 8)) if kind == "whole" else 0,
        gpu_milli=draw(st.integers(1, 999)) if kind == "fractional" else 0,
        cpu_milli=draw(st.sampled_from([0, 1000, 16_000])),
        memory_mib=draw(st.sampled_from([0, 1024])),
        gpu_products=draw(st.sampled_from([(), ("GPU-A",), ("GPU-B",)])),
    )
    levels = st.none() | st.sampled_from(level_names)
    return Gang.uniform(
        "g",
        count,
        request,
        min_members=draw(st.integers(0, count)),
        nvlink_group=draw(st.sampled_from([0, 0, 1, 2, 3])) if kind == "whole" else 0,
        required_level=draw(levels),
        preferred_level=draw(levels),
    )


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cluster=clusters(), data=st.data(), seed=st.integers(0, 2**16))
def test_random_gangs_place_validly_or_say_why(cluster, data, seed):
    state = half_busy(cluster, seed)
    gang = data.draw(gangs(state.compiled.level_names))
    before = state.compiled.mutable_state_bytes()
    try:
        result = place(gang, state)
    except GangSpecError as exc:
        assert str(exc)
        return
    assert state.compiled.mutable_state_bytes() == before
    if isinstance(result, Placement):
        assert_valid_placement(gang, result, state)
    else:
        assert isinstance(result, Unplaceable) and result.reason
