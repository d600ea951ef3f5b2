"""Backfill with runtime estimates from the queue's history: a gang past its estimate is not
expected to end now, so the head's reservation never collapses onto the present, and with
estimates that history makes exact the head starts no later than it was first reserved to."""

from __future__ import annotations

import random

import pytest
from phalanx.policies.estimates import MIN_REMAINING_S, MIN_TAIL_SAMPLES, RuntimeEstimator
from phalanx.policies.queue.backfill import BackfillPolicy, plan_reservation
from phalanx.scheduler.cycle import SchedulingCycle
from phalanx.scheduler.engine import place
from phalanx.scheduler.gang import Gang, MemberRequest
from phalanx.scheduler.interfaces import QueueContext, RunningGang
from phalanx.scheduler.placement import Placement
from phalanx.scheduler.state import ClusterState
from phalanx.simulator.clusters import resolve_cluster
from phalanx.simulator.config import SimulationConfig
from phalanx.simulator.engine import Simulation
from phalanx.simulator.job import Job, TraceWorkload
from phalanx.topology.presets import cluster_preset


def gang(name: str, gpus: int, queue: str = "q", submit_s: float = 0.0, members: int = 1) -> Gang:
    request = MemberRequest(gpus=gpus)
    return Gang.uniform(name, members, request, submit_time_s=submit_s, queue=queue)


def estimator_with(runtimes_s: list[float], queue: str = "q") -> RuntimeEstimator:
    estimator = RuntimeEstimator()
    for i, runtime in enumerate(runtimes_s):
        estimator.record_completion(gang(f"done{i}", 1, queue), runtime)
    return estimator


def test_an_overrunning_gang_gets_the_median_residual_life_of_its_queue() -> None:
    estimator = estimator_with([100, 200, 1000, 3000, 5000, 9000])
    assert estimator.estimate_s(gang("g", 1)) == 2000  # the queue's median
    # it has run 2,500 s: the longer runtimes are 3,000, 5,000 and 9,000, median 5,000
    assert estimator.remaining_after_s(gang("g", 1), 2500) == 2500
    # past all but two of them (fewer than MIN_TAIL_SAMPLES): as long again as it has run
    assert MIN_TAIL_SAMPLES == 3
    assert estimator.remaining_after_s(gang("g", 1), 4000) == 4000
    assert estimator.remaining_after_s(gang("g", 1), 2990) == 2010
    # never less than a minute
    tight = estimator_with([100, 100, 100, 1000, 1000, 1000])
    assert tight.remaining_after_s(gang("g", 1), 990) == MIN_REMAINING_S


def test_the_history_window_forgets_the_oldest_runtime() -> None:
    estimator = RuntimeEstimator(window=3)
    for i, runtime in enumerate([1000.0, 2000.0, 3000.0, 4000.0]):
        estimator.record_completion(gang(f"d{i}", 1), runtime)
    assert estimator.estimate_s(gang("g", 1)) == 3000.0  # 2,000, 3,000 and 4,000
    assert estimator.remaining_after_s(gang("g", 1), 500.0) == 2500.0  # not 2,500 - 500


@pytest.mark.parametrize("elapsed_s", [1_000.0, 50_000.0])
def test_a_reservation_never_collapses_onto_the_present(elapsed_s: float) -> None:
    """Every running gang is past its estimate: the head is still reserved for later, not now
    (before, it was planned to start at once and nothing was held back for it)."""
    state = ClusterState(cluster_preset("dgx-h100:2").compile())
    running = []
    for name in ("r1", "r2"):
        g = gang(name, 8)
        placement = place(g, state)
        assert isinstance(placement, Placement)
        state.assign(placement, 0.0)
        running.append(RunningGang(g, placement, 0.0, float("inf")))
    estimator = estimator_with([300.0] * 5)
    ctx = QueueContext(now_s=elapsed_s, state=state, running=running)
    reservation = plan_reservation(gang("head", 8, members=2), ctx, place, estimator)
    assert reservation is not None
    assert reservation.start_s >= elapsed_s + MIN_REMAINING_S


def test_a_gang_off_the_heads_nodes_backfills_into_the_shadow_itself() -> None:
    state = ClusterState(cluster_preset("dgx-h100:3").compile())
    running = []
    for name, gpus, end_s in (("a", 8, 1000.0), ("b", 4, 5000.0)):
        g = gang(name, gpus)
        placement = place(g, state)
        assert isinstance(placement, Placement)
        state.assign(placement, 0.0)
        running.append(RunningGang(g, placement, 0.0, end_s))
    policy = BackfillPolicy(order="fifo", default_runtime_s=2000.0)
    head = gang("head", 8, submit_s=1.0, members=2)  # one free node now, a second at t=1000
    small = gang("small", 4, submit_s=2.0)  # runs past t=1000, but fits beside "b"
    out = SchedulingCycle(state, policy).run([head, small], running, now_s=0.0)
    reservation = policy.reservation
    assert reservation is not None and reservation.start_s == 1000.0
    assert [g.name for g, _ in out.started] == ["small"]
    small_nodes = {m.node_index for m in state.holdings["small"].placement.members}
    assert small_nodes.isdisjoint(reservation.head_nodes)
    assert "small" in reservation.shadow.holdings


def _workload(seed: int) -> TraceWorkload:
    """Two queues whose jobs all run 500 s and 1,300 s. One job of each finishes first, so
    from then on every estimate the history gives is exact."""
    rng = random.Random(seed)
    durations = {"a": 500.0, "b": 1300.0}
    jobs = [Job(f"warm-{q}", 0.0, d, gpus=1, tenant=q) for q, d in durations.items()]
    for i in range(40):
        q = rng.choice("ab")
        jobs.append(
            Job(
                f"j{i:02d}",
                1400.0 + rng.uniform(0, 4000),
                durations[q],
                gpus=rng.choice([1, 2, 4, 8, 8, 16]),
                tenant=q,
            )
        )
    return TraceWorkload("exact", jobs, "test")


@pytest.mark.parametrize("seed", range(6))
def test_the_head_never_starts_after_its_reservation(seed: int) -> None:
    """With history that predicts every runtime exactly, no head of the queue starts later
    than the start it was first reserved for: backfilled gangs never delay it."""
    config = SimulationConfig(policy="backfill", policy_options={"order": "fifo"})
    sim = Simulation(_workload(seed), resolve_cluster("dgx-h100:2"), config)
    policy = sim.queue
    assert isinstance(policy, BackfillPolicy)
    first_reserved: dict[str, float] = {}
    plan = policy.after_blocked

    def recording(g, result, ctx):  # type: ignore[no-untyped-def]
        answer = plan(g, result, ctx)
        reservation = policy.reservation
        if reservation is not None and ctx.now_s >= 1300.0:  # both queues have history
            first_reserved.setdefault(reservation.head.name, reservation.start_s)
        return answer

    policy.after_blocked = recording  # type: ignore[method-assign]
    result = sim.run()
    starts = {r.job.name: r.first_start_s for r in result.runs}
    assert first_reserved, "no reservation was made: the workload does not contend"
    for name, reserved_s in first_reserved.items():
        assert starts[name] <= reserved_s + 1e-6, (name, starts[name], reserved_s)


def test_sjbf_keeps_the_oldest_first_and_tries_the_rest_smallest_first() -> None:
    state = ClusterState(cluster_preset("dgx-h100:1").compile())
    ctx = QueueContext(now_s=0.0, state=state, running=[])

    def timed(name: str, gpus: int, submit_s: float, runtime_s: float) -> Gang:
        request = MemberRequest(gpus=gpus)
        return Gang.uniform(name, 1, request, submit_time_s=submit_s, runtime_estimate_s=runtime_s)

    gangs = [
        timed("long-1gpu", 1, 1.0, 1000.0),  # 1,000 GPU-s
        timed("oldest", 8, 0.0, 5000.0),
        timed("short-8gpu", 8, 3.0, 10.0),  # 80 GPU-s
        timed("short-1gpu", 1, 2.0, 10.0),  # 10 GPU-s
    ]
    sjbf = BackfillPolicy(order="fifo", candidates="sjf")
    assert [g.name for g in sjbf.order(gangs, ctx)] == [
        "oldest",
        "short-1gpu",
        "short-8gpu",
        "long-1gpu",
    ]
    plain = BackfillPolicy(order="fifo")
    assert [g.name for g in plain.order(gangs, ctx)][:2] == ["oldest", "long-1gpu"]
    with pytest.raises(ValueError, match="candidates"):
        BackfillPolicy(candidates="random")


def test_a_job_class_learns_from_its_own_history_first() -> None:
    estimator = RuntimeEstimator()

    def of(name: str, job_class: str) -> Gang:
        return Gang.uniform(name, 1, MemberRequest(gpus=1), queue="q", job_class=job_class)

    for i in range(3):
        estimator.record_completion(of(f"c{i}", "cifar10"), 100.0)
        estimator.record_completion(of(f"i{i}", "imagenet"), 90_000.0)
    assert estimator.estimate_s(of("new", "cifar10")) == 100.0
    assert estimator.estimate_s(of("new", "imagenet")) == 90_000.0
    assert estimator.estimate_s(of("new", "bert")) == 45_050.0  # the queue's median
    assert estimator.estimate_s(of("new", "")) == 45_050.0
    # a cifar10 job past all of its class's runtimes falls back on the queue's longer ones
    assert estimator.remaining_after_s(of("late", "cifar10"), 1000.0) == 89_000.0
