"""Gang-aware preemption: whole gangs, cheapest set, protections, no loops, fair reclaim.

Property: a decision never evicts unless the preemptor's full placement then fits.
"""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phalanx.policies.preemption.guards import EvictionHistory
from phalanx.policies.preemption.priority import PriorityPreemption
from phalanx.policies.preemption.reclaim import FairShareReclaim, guarantee_share
from phalanx.policies.queue.las import LasPolicy
from phalanx.policies.queue.quota_tree import QuotaTree
from phalanx.policies.registry import get_preemption_policy
from phalanx.policies.resources import Resources
from phalanx.scheduler.engine import place
from phalanx.scheduler.gang import Gang, MemberRequest
from phalanx.scheduler.interfaces import PreemptionDecision, QueueContext, RunningGang
from phalanx.scheduler.placement import Placement
from phalanx.scheduler.state import ClusterState
from phalanx.topology.presets import cluster_preset

NOW = 10_000.0


def fresh_state(nodes: int) -> ClusterState:
    return ClusterState(cluster_preset(f"dgx-h100:{nodes}").compile())


def job(name: str, members: int, gpus: int, priority: int = 0, queue: str = "default") -> Gang:
    return Gang.uniform(name, members, MemberRequest(gpus=gpus), priority=priority, queue=queue)


def run_on(state: ClusterState, g: Gang, start_s: float = 0.0) -> RunningGang:
    placement = place(g, state)
    assert isinstance(placement, Placement)
    state.assign(placement, start_s)
    return RunningGang(g, placement, start_s, math.inf)


def decide(
    policy: object, preemptor: Gang, state: ClusterState, running: list[RunningGang]
) -> PreemptionDecision | None:
    ctx = QueueContext(NOW, state, running, pending=[preemptor])
    return policy.select_victims(preemptor, ctx, place)  # type: ignore[attr-defined]


def assert_executable(
    decision: PreemptionDecision, state: ClusterState, running: list[RunningGang]
) -> None:
    """Whole running gangs, and the preemptor fits once they are gone."""
    names = {r.gang.name for r in running}
    assert set(decision.victims) <= names
    what_if = state.copy()
    for victim in decision.victims:
        what_if.release(victim)
    what_if.reserve(decision.placement, NOW)
    what_if.check_invariants()


def test_lower_priority_goes_first() -> None:
    state = fresh_state(2)
    running = [
        run_on(state, job("p1", 1, 8, priority=1)),
        run_on(state, job("p0", 1, 8, priority=0)),
    ]
    decision = decide(PriorityPreemption(), job("hi", 1, 8, priority=5), state, running)
    assert decision is not None and decision.victims == ("p0",)
    assert_executable(decision, state, running)
    assert "evicts 1 gang(s) of lower rank (p0=0)" in decision.reason


def test_least_lost_work_goes_first_within_a_priority() -> None:
    state = fresh_state(2)
    old = run_on(state, job("old", 1, 8), start_s=0.0)
    young = run_on(state, job("young", 1, 8), start_s=NOW - 1000)
    decision = decide(PriorityPreemption(), job("hi", 1, 8, priority=5), state, [old, young])
    assert decision is not None and decision.victims == ("young",)
    assert "losing 8000 GPU-s" in decision.reason


def test_borrowed_quota_goes_before_guaranteed() -> None:
    tree = {
        "queues": [
            {"name": "lender", "guaranteed": {"gpu": 8}},
            {"name": "borrower", "guaranteed": {"gpu": 0}},
        ]
    }
    state = fresh_state(2)
    guaranteed = run_on(state, job("guaranteed", 1, 8, queue="lender"), start_s=NOW - 500)
    borrowed = run_on(state, job("borrowed", 1, 8, queue="borrower"), start_s=0.0)
    hi = job("hi", 1, 8, priority=5)
    decision = decide(PriorityPreemption(quotas=tree), hi, state, [guaranteed, borrowed])
    assert decision is not None and decision.victims == ("borrowed",)
    without_tree = decide(PriorityPreemption(), hi, state, [guaranteed, borrowed])
    assert without_tree is not None and without_tree.victims == ("guaranteed",)


def test_victims_are_whole_gangs_and_the_set_is_minimal() -> None:
    state = fresh_state(3)
    spread = run_on(state, job("spread", 2, 8))  # two whole nodes
    halves = [run_on(state, job(f"half{i}", 1, 4), start_s=NOW - 100) for i in range(2)]
    running = [spread, *halves]
    decision = decide(
        PriorityPreemption(min_runtime_s=0), job("hi", 1, 8, priority=5), state, running
    )
    assert decision is not None
    assert set(decision.victims) == {"half0", "half1"}, "least lost work: the two young halves"
    assert_executable(decision, state, running)
    for victim in decision.victims:
        fewer = state.copy()
        for other in decision.victims:
            if other != victim:
                fewer.release(other)
        assert not isinstance(place(job("hi", 1, 8, priority=5), fewer), Placement), "minimal"


def test_minimum_runtime_protects_young_gangs() -> None:
    state = fresh_state(1)
    young = run_on(state, job("young", 1, 8), start_s=NOW - 10)
    assert (
        decide(PriorityPreemption(min_runtime_s=300), job("hi", 1, 8, priority=5), state, [young])
        is None
    )
    assert (
        decide(PriorityPreemption(min_runtime_s=5), job("hi", 1, 8, priority=5), state, [young])
        is not None
    )


def test_nothing_is_evicted_when_the_preemptor_cannot_fit_anyway() -> None:
    state = fresh_state(1)
    low = run_on(state, job("low", 1, 4))
    assert decide(PriorityPreemption(), job("huge", 2, 8, priority=9), state, [low]) is None
    assert decide(PriorityPreemption(), job("same", 1, 8, priority=0), state, [low]) is None


def test_a_gang_cannot_be_evicted_by_one_it_just_evicted() -> None:
    ranks = {"a": 1.0, "b": 0.0}
    policy = PriorityPreemption(rank=lambda g, ctx: ranks[g.name])
    state = fresh_state(1)
    b = run_on(state, job("b", 1, 8))
    first = decide(policy, job("a", 1, 8), state, [b])
    assert first is not None and first.victims == ("b",)
    state.release("b")
    a = run_on(state, job("a", 1, 8))
    ranks.update(a=0.0, b=1.0)  # LAS: a has now run long, b has starved
    assert decide(policy, job("b", 1, 8), state, [a]) is None
    assert (
        decide(PriorityPreemption(rank=lambda g, ctx: ranks[g.name]), job("b", 1, 8), state, [a])
        is not None
    )


def test_las_rank_drives_preemption() -> None:
    las = LasPolicy(thresholds_gpu_s=[100.0])
    state = fresh_state(1)
    veteran = run_on(state, job("veteran", 1, 8))
    policy = PriorityPreemption(rank=las.rank)
    ctx = QueueContext(NOW, state, [veteran], {"veteran": 1e6})
    decision = policy.select_victims(job("fresh", 1, 8), ctx, place)
    assert decision is not None and decision.victims == ("veteran",)


RECLAIM_TREE = {
    "queues": [{"name": "a", "guaranteed": {"gpu": 8}}, {"name": "b", "guaranteed": {"gpu": 8}}]
}


def test_reclaim_takes_back_borrowed_quota_only() -> None:
    state = fresh_state(2)
    b_guaranteed = run_on(state, job("b1", 1, 8, queue="b"), start_s=NOW - 1000)
    b_borrowed = run_on(state, job("b2", 1, 8, queue="b"), start_s=0.0)
    running = [b_guaranteed, b_borrowed]
    policy = FairShareReclaim(RECLAIM_TREE)
    decision = decide(policy, job("a1", 1, 8, queue="a"), state, running)
    assert decision is not None and len(decision.victims) == 1
    assert decision.victims == ("b1",), "least lost work, and either would leave b at its guarantee"
    assert "fair-share reclaim: queue 'a' (at 1.00 of its guarantee" in decision.reason
    assert "from b at 2.00" in decision.reason
    assert_executable(decision, state, running)
    assert decide(policy, job("a-big", 2, 8, queue="a"), state, running) is None, "beyond guarantee"


def test_reclaim_never_takes_guaranteed_quota() -> None:
    state = fresh_state(2)
    running = [run_on(state, job("b1", 1, 8, queue="b")), run_on(state, job("a0", 1, 4, queue="a"))]
    policy = FairShareReclaim(RECLAIM_TREE)
    assert decide(policy, job("a1", 1, 8, queue="a"), state, running) is None


def test_guarantee_share_counts_governed_resources_only() -> None:
    tree = QuotaTree.from_spec(
        {"queues": [{"name": "q", "guaranteed": {"gpu": 4, "cpu": 0}}, {"name": "free"}]}
    )
    q = tree.queues["q"]
    assert guarantee_share(q, Resources(2000, 0, 10**9)) == 0.5
    assert guarantee_share(q, Resources(6000, 0, 0)) == 1.5
    assert guarantee_share(q, Resources(0, 1, 0)) == math.inf
    assert guarantee_share(tree.queues["free"], Resources(10**6, 10**6, 10**6)) == 0.0


def test_reclaim_strictly_lowers_the_largest_share_involved() -> None:
    tree = {
        "queues": [
            {"name": "a", "guaranteed": {"gpu": 4}},
            {"name": "b", "guaranteed": {"gpu": 4}},
        ]
    }
    state = fresh_state(1)
    running = [run_on(state, job("a0", 1, 2, queue="a")), run_on(state, job("b0", 1, 6, queue="b"))]
    policy = FairShareReclaim(tree)
    decision = decide(policy, job("a1", 1, 2, queue="a"), state, running)
    assert decision is not None and decision.victims == ("b0",)
    usage_a = guarantee_share(policy.tree.queues["a"], Resources(4000, 0, 0))
    usage_b = guarantee_share(policy.tree.queues["b"], Resources(6000, 0, 0))
    assert usage_a == 1.0 < usage_b == 1.5
    assert "(at 1.00 of its guarantee" in decision.reason and "b at 1.50" in decision.reason


def test_chained_policies_fall_through_in_order() -> None:
    state = fresh_state(2)
    running = [
        run_on(state, job("b1", 1, 8, queue="b", priority=5)),
        run_on(state, job("b2", 1, 8, queue="b", priority=5)),
    ]
    chain = get_preemption_policy("priority+reclaim", quotas=RECLAIM_TREE, min_runtime_s=0)
    decision = decide(chain, job("a1", 1, 8, queue="a", priority=0), state, running)
    assert decision is not None and decision.reason.startswith("fair-share reclaim")
    assert (
        decide(get_preemption_policy("none"), job("x", 1, 8, priority=99), state, running) is None
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(1, 2), st.sampled_from([1, 2, 4, 8]), st.integers(0, 3), st.floats(0, NOW)
        ),
        max_size=8,
    ),
    st.tuples(st.integers(1, 3), st.sampled_from([1, 2, 4, 8]), st.integers(0, 4)),
)
def test_preemption_never_evicts_without_placing_the_preemptor(
    running_specs: list[tuple[int, int, int, float]], preemptor_spec: tuple[int, int, int]
) -> None:
    state = fresh_state(3)
    running = []
    for i, (members, gpus, priority, start) in enumerate(running_specs):
        g = job(f"r{i}", members, gpus, priority)
        result = place(g, state)
        if isinstance(result, Placement):
            state.assign(result, start)
            running.append(RunningGang(g, result, start, math.inf))
    members, gpus, priority = preemptor_spec
    preemptor = job("preemptor", members, gpus, priority)
    policy = PriorityPreemption(min_runtime_s=300, history=EvictionHistory())
    decision = decide(policy, preemptor, state, running)
    if decision is None:
        return
    assert_executable(decision, state, running)
    by_name = {r.gang.name: r for r in running}
    for victim in decision.victims:
        assert by_name[victim].gang.priority < priority
        assert NOW - by_name[victim].start_s >= 300


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    priorities=st.lists(st.integers(min_value=-3, max_value=3), min_size=0, max_size=12),
    preemptor_priority=st.integers(min_value=-4, max_value=4),
    started=st.integers(min_value=0, max_value=2),
)
def test_lower_ranked_gangs_are_those_a_pass_finds(priorities, preemptor_priority, started):
    """The running gangs grouped by priority once per state of ``ctx.running`` give the same
    candidates as a pass over them, also after the cycle appended the gangs it started."""
    state = fresh_state(16)
    running = [run_on(state, job(f"r{i}", 1, 1, priority=p)) for i, p in enumerate(priorities)]
    policy = PriorityPreemption()
    ctx = QueueContext(NOW, state, running, pending=[])
    for step in range(started + 1):
        if step:
            running.append(run_on(state, job(f"s{step}", 1, 1, priority=step - 2)))
        for mine in (float(preemptor_priority), math.nan):
            found = {r.gang.name for r in policy._lower_ranked(mine, ctx)}
            scanned = {r.gang.name for r in running if float(r.gang.priority) < mine}
            assert found == scanned


def test_waiting_gangs_do_not_each_scan_the_running_ones():
    """With every gang at one priority no waiting gang has a candidate, and asking again for
    the same running gangs reads the priorities found the first time."""
    from phalanx.policies.preemption.priority import PriorityGroups
    from phalanx.scheduler.running_view import CycleRunning

    state = fresh_state(4)
    running = CycleRunning([run_on(state, job(f"r{i}", 1, 8)) for i in range(4)])
    policy = PriorityPreemption()
    ctx = QueueContext(NOW, state, running, pending=[])
    waiting = [job(f"w{i}", 1, 8) for i in range(3)]
    assert all(policy.select_victims(w, ctx, place) is None for w in waiting)
    groups = running._derived[PriorityGroups]
    assert policy.select_victims(job("w9", 1, 8), ctx, place) is None
    assert running._derived[PriorityGroups] is groups
