"""Tiresias: demotion lets short newcomers overtake, preempted jobs keep their progress, and the
starvation guard puts a starved gang back at the top."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phalanx.policies.preemption.priority import PriorityPreemption
from phalanx.policies.queue.tiresias import TiresiasPolicy
from phalanx.policies.registry import get_preemption_policy, get_queue_policy
from phalanx.scheduler.engine import place
from phalanx.scheduler.gang import Gang, MemberRequest
from phalanx.scheduler.interfaces import QueueContext, RunningGang
from phalanx.scheduler.placement import Placement
from phalanx.scheduler.state import ClusterState
from phalanx.simulator.config import SimulationConfig
from phalanx.simulator.job import Job, TraceWorkload
from phalanx.simulator.metrics import summarize
from phalanx.simulator.run import simulate
from phalanx.simulator.traces.openb import flat_cluster, pcie_node


def one_node(gpus: int = 4, nodes: int = 1):
    return flat_cluster(
        "t", [pcie_node(f"n{i}", "T4", gpus, 32_000, 128 * 1024) for i in range(nodes)]
    )


def runs_of(jobs: list[Job], **config: object) -> dict[str, object]:
    result = simulate(
        TraceWorkload("t", jobs, source="test"), one_node(), SimulationConfig(**config)
    )
    return {r.job.name: r for r in result.runs}


def test_long_job_is_demoted_and_a_short_newcomer_overtakes_it() -> None:
    # L (4 GPUs) crosses 200 GPU-s at t=50 and drops to queue 1. S arrives at 100 in queue 0,
    # evicts L at once and runs 100-150; L resumes with 900 s left and ends at 1050.
    jobs = [Job("L", 0.0, 1000.0, gpus=4), Job("S", 100.0, 50.0, gpus=4)]
    runs = runs_of(jobs, policy="tiresias", policy_options={"thresholds_gpu_s": [200.0]})
    assert runs["S"].first_start_s == 100 and runs["S"].jct_s == 50
    assert runs["L"].preemptions == 1 and runs["L"].end_s == pytest.approx(1050)
    fifo = runs_of(jobs, policy="fifo")
    assert fifo["S"].first_start_s == 1000, "without preemption S waits for L"


def test_demotion_happens_when_the_threshold_is_crossed() -> None:
    # S arrives at 10 while L is still in queue 0 (same rank: no eviction). L crosses
    # 200 GPU-s at 50 with nothing else happening; the wake-up demotes it and S starts at 50.
    jobs = [Job("L", 0.0, 1000.0, gpus=4), Job("S", 10.0, 50.0, gpus=4)]
    runs = runs_of(jobs, policy="tiresias", policy_options={"thresholds_gpu_s": [200.0]})
    assert runs["S"].first_start_s == pytest.approx(50, abs=1e-3)
    assert runs["L"].end_s == pytest.approx(1050, abs=1e-3)


def test_preempted_jobs_keep_their_progress_unless_told_to_restart() -> None:
    jobs = [Job("L", 0.0, 1000.0, gpus=4), Job("S", 100.0, 50.0, gpus=4)]
    options = {"thresholds_gpu_s": [200.0]}
    kept = runs_of(jobs, policy="tiresias", policy_options=options)
    lost = runs_of(jobs, policy="tiresias", policy_options=options, resume_after_preemption=False)
    assert kept["L"].end_s == pytest.approx(1050)
    assert lost["L"].end_s == pytest.approx(1150), "restarted from scratch at 150"
    delayed = runs_of(jobs, policy="tiresias", policy_options=options, restart_delay_s=5.0)
    # Every start costs 5 s: L works 95 s before the eviction; S runs 100-155; L restarts at
    # 155 and needs 5 + 905 s more.
    assert delayed["L"].end_s == pytest.approx(155 + 5 + 905)


def stream(until: float) -> list[Job]:
    """L (100 s of work) then a 4-GPU, 20 s job every 20 s: the node is never idle."""
    shorts = [Job(f"s{i:04d}", 30.0 + 20 * i, 20.0, gpus=4) for i in range(int((until - 30) // 20))]
    return [Job("L", 0.0, 100.0, gpus=4), *shorts]


def test_starvation_guard_lets_a_demoted_job_finish_inside_a_stream_of_short_ones() -> None:
    options = {"thresholds_gpu_s": [100.0]}
    starved = runs_of(stream(3000.0), policy="tiresias", policy_options=options)
    assert starved["L"].end_s > 3000, "without the guard L waits for the stream to end"
    guarded = runs_of(
        stream(3000.0), policy="tiresias", policy_options={**options, "starve_limit_s": 200.0}
    )
    assert guarded["L"].end_s < 1500
    assert guarded["L"].preemptions >= 2


def test_las_by_name_is_tiresias_and_rank_names_work() -> None:
    assert isinstance(get_queue_policy("las"), TiresiasPolicy)
    preemption = get_preemption_policy("priority", rank="las")
    assert isinstance(preemption, PriorityPreemption)
    with pytest.raises(ValueError, match="rank='bogus'"):
        get_preemption_policy("priority", rank="bogus")
    jobs = [Job("L", 0.0, 1000.0, gpus=4), Job("S", 100.0, 50.0, gpus=4)]
    runs = runs_of(
        jobs,
        policy="las",
        policy_options={"thresholds_gpu_s": [200.0]},
        preemption="priority",
        preemption_options={"rank": "las", "min_runtime_s": 0},
    )
    assert runs["S"].first_start_s == 100, "rank=las binds the run's own las thresholds"


# ---------------------------------------------------------------------------- property
def gang(name: str, gpus: int, at: float) -> Gang:
    return Gang.uniform(name, 1, MemberRequest(gpus=gpus), submit_time_s=at)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from([1, 2, 4]), st.floats(0, 5000), st.floats(0, 400)),
        min_size=1,
        max_size=8,
    ),
    st.floats(50, 500),
    st.floats(0, 1000),
)
def test_no_job_starves_past_the_guard(
    shapes: list[tuple[int, float, float]], limit: float, later: float
) -> None:
    """Every gang seen running at t0 and waiting at t0 + ``later``: those that have waited at
    least ``starve_limit_s`` are in the top queue, outrank every running gang, and are tried
    before every gang outside the top queue."""
    policy = TiresiasPolicy(thresholds_gpu_s=[100.0, 1000.0], starve_limit_s=limit)
    state = ClusterState(one_node(4, nodes=8).compile())
    gangs = [gang(f"g{i}", gpus, at) for i, (gpus, at, _) in enumerate(shapes)]
    attained = {g.name: service for g, (_, _, service) in zip(gangs, shapes, strict=True)}
    running = []
    for g in gangs:
        result = place(g, state)
        assert isinstance(result, Placement)
        state.assign(result, 0.0)
        running.append(RunningGang(g, result, 0.0, math.inf))
    t0 = 6000.0
    policy.order([], QueueContext(t0, state, running, dict(attained)))
    waiting, still = gangs[::2], running[1::2]
    now = t0 + later
    ctx = QueueContext(now, state, still, dict(attained), pending=waiting)
    order = policy.order(waiting, ctx)
    starved = [g for g in waiting if now - t0 >= limit]
    for g in starved:
        assert policy.queue_index(g, ctx) == 0
        assert all(policy.rank(g, ctx) >= policy.rank(r.gang, ctx) for r in still)
    first_outside_top = next(
        (i for i, g in enumerate(order) if policy.queue_index(g, ctx) > 0), len(order)
    )
    assert all(order.index(g) < first_outside_top for g in starved)


def test_a_pending_guard_wake_up_does_not_outlive_the_run() -> None:
    # S evicts L at 50 and runs to 550 (demoted at 100, so no threshold is due after that);
    # L last ran at 50, so the guard would wake at 5050, long after L ends at 1500. The
    # wake-up is dropped once nothing waits, so the time averages end with the run.
    jobs = [Job("L", 0.0, 1000.0, gpus=4), Job("S", 10.0, 500.0, gpus=4)]
    options = {"thresholds_gpu_s": [200.0], "starve_limit_s": 5000.0}
    result = simulate(
        TraceWorkload("t", jobs, source="test"),
        one_node(),
        SimulationConfig(policy="tiresias", policy_options=options),
    )
    summary = summarize(result)
    assert summary["makespan_s"] == pytest.approx(1500)
    assert summary["gpu_allocation_ratio"] == pytest.approx(1.0)


def test_tiresias_preemption_by_name_evicts_a_lower_queue() -> None:
    state = ClusterState(one_node(8).compile())
    veteran = gang("veteran", 8, 0.0)
    placed = place(veteran, state)
    assert isinstance(placed, Placement)
    state.assign(placed, 0.0)
    running = [RunningGang(veteran, placed, 0.0, math.inf)]
    policy = get_preemption_policy("tiresias", thresholds_gpu_s=[100.0])
    ctx = QueueContext(1000.0, state, running, {"veteran": 8000.0})
    decision = policy.select_victims(gang("fresh", 8, 900.0), ctx, place)
    assert decision is not None and decision.victims == ("veteran",)
    young = QueueContext(1000.0, state, running, {"veteran": 50.0})
    assert policy.select_victims(gang("fresh", 8, 900.0), young, place) is None
