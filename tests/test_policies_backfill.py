"""EASY backfill: the blocked head gets a reservation that later gangs can never delay."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phalanx.policies.queue.backfill import BackfillPolicy
from phalanx.policies.registry import get_preemption_policy, get_queue_policy
from phalanx.scheduler.cycle import SchedulingCycle
from phalanx.scheduler.engine import place
from phalanx.scheduler.gang import Gang, MemberRequest
from phalanx.scheduler.interfaces import QueueContext, RunningGang
from phalanx.scheduler.placement import Placement
from phalanx.scheduler.state import ClusterState
from phalanx.topology.presets import cluster_preset


def fresh_state(nodes: int) -> ClusterState:
    return ClusterState(cluster_preset(f"dgx-h100:{nodes}").compile())


def job(name: str, members: int, gpus: int, runtime_s: float, submit_s: float = 0.0) -> Gang:
    return Gang.uniform(
        name,
        members,
        MemberRequest(gpus=gpus),
        submit_time_s=submit_s,
        runtime_estimate_s=runtime_s,
    )


def run_on(state: ClusterState, g: Gang, end_s: float) -> RunningGang:
    placement = place(g, state)
    assert isinstance(placement, Placement)
    state.assign(placement, 0.0)
    return RunningGang(g, placement, 0.0, end_s)


def test_short_gangs_backfill_long_ones_wait() -> None:
    state = fresh_state(2)
    r1 = run_on(state, job("r1", 1, 8, 100), end_s=100.0)
    r2 = run_on(state, job("r2", 1, 2, 1000), end_s=1000.0)
    head = job("head", 2, 8, 500, submit_s=1)
    short = job("short", 1, 2, 50, submit_s=2)
    long = job("long", 1, 2, 5000, submit_s=3)
    policy = BackfillPolicy(order="fifo")
    out = SchedulingCycle(state, policy).run([long, short, head], [r1, r2], now_s=0.0)
    assert [g.name for g, _ in out.started] == ["short"]
    assert "capacity" in out.waiting["head"]
    assert out.waiting["long"] == "backfill: would delay gang 'head', reserved to start at t=1000s"
    assert policy.reservation is not None and policy.reservation.start_s == 1000.0


def test_long_gangs_may_use_what_the_head_will_not_need() -> None:
    state = fresh_state(3)
    r1 = run_on(state, job("r1", 1, 8, 100), end_s=100.0)
    r2 = run_on(state, job("r2", 1, 4, 1000), end_s=1000.0)
    third = run_on(state, job("third", 1, 8, 1000), end_s=1000.0)
    state.release("third")
    head = job("head", 2, 8, 500, submit_s=1)
    long = job("long", 1, 4, 5000, submit_s=2)
    policy = BackfillPolicy(order="fifo")
    out = SchedulingCycle(state, policy).run([head, long], [r1, r2], now_s=0.0)
    assert third.placement.members[0].node != r2.placement.members[0].node
    assert policy.reservation is not None and policy.reservation.start_s == 100.0
    assert [g.name for g, _ in out.started] == ["long"]
    assert state.holdings["long"].placement.members[0].node == r2.placement.members[0].node


def test_no_reservation_when_waiting_cannot_help() -> None:
    state = fresh_state(1)
    r1 = run_on(state, job("r1", 1, 8, 100), end_s=100.0)
    policy = BackfillPolicy()
    out = SchedulingCycle(state, policy).run(
        [job("huge", 2, 8, 10, submit_s=0), job("small", 1, 1, 10, submit_s=1)], [r1], now_s=0.0
    )
    assert policy.reservation is None
    assert "huge" in out.waiting and "small" in out.waiting


def test_without_a_planner_backfill_blocks_behind_the_head() -> None:
    state = fresh_state(1)
    r1 = run_on(state, job("r1", 1, 6, 100), end_s=100.0)
    policy = BackfillPolicy()
    ctx = QueueContext(now_s=0.0, state=state, running=[r1])
    head, small = job("head", 1, 8, 10), job("small", 1, 1, 10, submit_s=1)
    policy.order([head, small], ctx)
    assert policy.after_blocked(head, place(head, state), ctx) is False


def test_estimates_come_from_the_gang_then_the_queue_median_then_the_default() -> None:
    policy = get_queue_policy("backfill", default_runtime_s=42.0)
    assert isinstance(policy, BackfillPolicy)
    anonymous = Gang.uniform("x", 1, MemberRequest(gpus=1), queue="q")
    assert policy.estimator.estimate_s(anonymous) == 42.0
    for runtime in (10.0, 30.0, 20.0):
        policy.record_completion(anonymous, runtime)
    assert policy.estimator.estimate_s(anonymous) == 20.0
    assert policy.estimator.estimate_s(job("own", 1, 1, 7.0)) == 7.0


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[int, list[tuple[int, int, float]], list[tuple[int, int, float]]]:
    nodes = draw(st.integers(2, 3))
    runtime = st.sampled_from([10.0, 100.0, 1000.0, 10000.0])
    shape = st.tuples(st.integers(1, 3), st.sampled_from([1, 2, 4, 8]), runtime)
    running = draw(st.lists(shape, min_size=1, max_size=6))
    return nodes, running, draw(st.lists(shape, min_size=2, max_size=8))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_backfill_never_delays_the_reserved_head(
    scenario: tuple[int, list[tuple[int, int, float]], list[tuple[int, int, float]]],
) -> None:
    nodes, running_shapes, pending_shapes = scenario
    state = fresh_state(nodes)
    running: list[RunningGang] = []
    for i, (members, gpus, runtime) in enumerate(running_shapes):
        g = job(f"r{i}", members, gpus, runtime)
        result = place(g, state)
        if isinstance(result, Placement):
            state.assign(result, 0.0)
            running.append(RunningGang(g, result, 0.0, runtime))
    pending = [job(f"p{i}", m, g, rt, submit_s=i) for i, (m, g, rt) in enumerate(pending_shapes)]
    policy = BackfillPolicy(order="fifo")
    now = 1.0
    out = SchedulingCycle(state, policy).run(pending, running, now_s=now)
    state.check_invariants()
    reservation = policy.reservation
    if reservation is None:
        return
    assert reservation.head.name in out.waiting
    ends = {r.gang.name: policy.estimator.expected_end_s(r, now) for r in running}
    ends.update({g.name: now + policy.estimator.estimate_s(g) for g, _ in out.started})
    at_start = state.copy()
    for name, end in ends.items():
        if end <= reservation.start_s:
            at_start.release(name)
    assert isinstance(place(reservation.head, at_start), Placement)


@pytest.mark.parametrize("r1_priority", [0, 6])
def test_a_preempting_gang_behind_a_reservation_is_held_back(r1_priority: int) -> None:
    """Victim r1 frees the head's node; victims r2/r3 hold nodes the shadow still needs."""
    state = fresh_state(3)
    r1 = Gang.uniform("r1", 1, MemberRequest(gpus=8), priority=r1_priority, runtime_estimate_s=100)
    running = [
        run_on(state, r1, end_s=100.0),
        run_on(state, job("r2", 1, 8, 10_000), end_s=10_000.0),
        run_on(state, job("r3", 1, 8, 10_000), end_s=10_000.0),
    ]
    head = job("head", 1, 8, 500, submit_s=1)
    urgent = Gang.uniform(
        "urgent", 1, MemberRequest(gpus=8), priority=5, submit_time_s=2, runtime_estimate_s=50_000
    )
    policy = BackfillPolicy(order="fifo")
    preemption = get_preemption_policy("priority", min_runtime_s=0)
    out = SchedulingCycle(state, policy, preemption).run([head, urgent], running, now_s=0.0)
    assert policy.reservation is not None and policy.reservation.start_s == 100.0
    assert not out.started and not out.preempted
    assert "preemption not taken: backfill: would delay gang 'head'" in out.waiting["urgent"]
    assert set(state.holdings) == {"r1", "r2", "r3"}
