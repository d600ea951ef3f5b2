"""DRF and hierarchical quota queues: orders, admission, and the fairness property.

Property: a fairness policy never takes a tenant (queue) past its share (guarantee) while
another tenant with a waiting gang that fits inside its own share is left waiting.
"""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phalanx.policies.queue.drf import DrfPolicy
from phalanx.policies.queue.quota import QuotaPolicy
from phalanx.policies.resources import Resources, cluster_capacity, gang_demand, usage_by
from phalanx.scheduler.cycle import SchedulingCycle
from phalanx.scheduler.engine import place
from phalanx.scheduler.gang import Gang, MemberRequest
from phalanx.scheduler.interfaces import QueueContext, RunningGang
from phalanx.scheduler.placement import Placement
from phalanx.scheduler.state import ClusterState
from phalanx.topology.presets import cluster_preset


def fresh_state(nodes: int = 2) -> ClusterState:
    return ClusterState(cluster_preset(f"dgx-h100:{nodes}").compile())


def job(
    name: str, gpus: int, tenant: str = "default", queue: str = "default", at: float = 0.0
) -> Gang:
    return Gang.uniform(
        name, 1, MemberRequest(gpus=gpus), tenant=tenant, queue=queue, submit_time_s=at
    )


def run_on(state: ClusterState, g: Gang, start_s: float = 0.0) -> RunningGang:
    placement = place(g, state)
    assert isinstance(placement, Placement)
    state.assign(placement, start_s)
    return RunningGang(g, placement, start_s, math.inf)


def ctx_for(
    state: ClusterState, running: list[RunningGang], pending: list[Gang], now: float = 0.0
) -> QueueContext:
    return QueueContext(now_s=now, state=state, running=running, pending=pending, place=None)


# ---------------------------------------------------------------------------- DRF
def test_drf_orders_by_progressive_filling() -> None:
    state = fresh_state(2)
    pending = [job(f"{t}{i}", 2, tenant=t, at=i) for t in "ab" for i in range(3)]
    order = DrfPolicy().order(pending, ctx_for(state, [], pending))
    assert [g.name for g in order] == ["a0", "b0", "a1", "b1", "a2", "b2"]
    busy = [run_on(state, job("a-run", 8, tenant="a"))]
    order = DrfPolicy().order(pending, ctx_for(state, busy, pending))
    assert [g.name for g in order][:4] == ["b0", "b1", "b2", "a0"]


def test_drf_weights_scale_the_share() -> None:
    state = fresh_state(2)
    pending = [job(f"{t}{i}", 2, tenant=t, at=i) for t in "ab" for i in range(4)]
    order = DrfPolicy(weights={"a": 2.5}).order(pending, ctx_for(state, [], pending))
    assert [g.name for g in order][:5] == ["a0", "b0", "a1", "a2", "b1"]


def test_drf_refuses_growth_past_the_share_while_another_tenant_waits() -> None:
    state = fresh_state(2)
    running = [run_on(state, job("a-run", 8, tenant="a"))]
    a_more, b_small = job("a-more", 2, tenant="a"), job("b-small", 2, tenant="b")
    policy = DrfPolicy()
    reason = policy.admit(a_more, ctx_for(state, running, [a_more, b_small]))
    assert reason is not None and "tenant 'b' waits below its share" in reason
    assert policy.admit(a_more, ctx_for(state, running, [a_more])) is None, "work conserving"
    assert policy.admit(b_small, ctx_for(state, running, [a_more, b_small])) is None
    assert (
        DrfPolicy(weights={"a": 3}).admit(a_more, ctx_for(state, running, [a_more, b_small]))
        is None
    )


def test_drf_counts_cpu_and_memory() -> None:
    state = fresh_state(2)
    cap = cluster_capacity(state.compiled)
    hog = MemberRequest(cpu_milli=int(cap.cpu_milli * 0.375))
    heavy = Gang.uniform("cpu-hog", 2, hog, tenant="a")
    running = [run_on(state, heavy)]
    wants = job("a-gpu", 1, tenant="a")
    reason = DrfPolicy().admit(wants, ctx_for(state, running, [wants, job("b", 1, tenant="b")]))
    assert reason is not None and "75" in reason


# ---------------------------------------------------------------------------- quotas
TREE = {
    "queues": [
        {"name": "org", "guaranteed": {"gpu": 12}, "borrowing_limit": {"gpu": 0}},
        {"name": "a", "parent": "org", "guaranteed": {"gpu": 8}},
        {"name": "b", "parent": "org", "guaranteed": {"gpu": 4}, "weight": 1},
        {"name": "capped", "guaranteed": {"gpu": 2}, "borrowing_limit": {"gpu": 1}},
    ]
}


def test_quota_limits_apply_at_every_level() -> None:
    state = fresh_state(2)
    policy = QuotaPolicy(TREE)
    running = [run_on(state, job("c-run", 2, queue="capped"))]
    more = job("c-more", 2, queue="capped")
    reason = policy.admit(more, ctx_for(state, running, [more]))
    assert reason == "quota: queue 'capped' would exceed its limit (gpu_milli 4000 > 3000)"
    running = [run_on(state, job("a-run", 8, queue="a"))]
    a_more = job("a-more", 8, queue="a")
    reason = policy.admit(a_more, ctx_for(state, running, [a_more]))
    assert reason is not None and "queue 'org' would exceed its limit" in reason
    fits = job("a-fits", 4, queue="a")
    assert policy.admit(fits, ctx_for(state, running, [fits])) is None, "borrows b's idle quota"


def test_quota_rejects_unknown_and_inner_queues() -> None:
    state = fresh_state(1)
    policy = QuotaPolicy(TREE)
    for queue, words in (("nope", "not in the quota tree"), ("org", "has child queues")):
        g = job("x", 1, queue=queue)
        assert words in (policy.admit(g, ctx_for(state, [], [g])) or "")


def test_borrowing_pauses_while_a_queue_waits_within_its_guarantee() -> None:
    state = fresh_state(2)
    policy = QuotaPolicy(TREE)
    running = [run_on(state, job("a-run", 8, queue="a"))]
    borrow, b_wait = job("a-borrow", 2, queue="a"), job("b-wait", 2, queue="b")
    reason = policy.admit(borrow, ctx_for(state, running, [borrow, b_wait]))
    assert reason == (
        "quota: queue 'a' would borrow beyond its guarantee while queue 'b' waits within its own"
    )
    assert policy.admit(borrow, ctx_for(state, running, [borrow])) is None
    too_big = job("b-huge", 8, queue="b")
    assert policy.admit(borrow, ctx_for(state, running, [borrow, too_big])) is None


def test_fair_tree_orders_by_decayed_usage_relative_to_weight() -> None:
    state = fresh_state(2)
    tree = {"queues": [{"name": "x", "weight": 1}, {"name": "y", "weight": 1}]}
    policy = QuotaPolicy(tree, half_life_s=100.0)
    running = [run_on(state, job("x-run", 8, queue="x"))]
    pending = [job("x1", 1, queue="x", at=0), job("y1", 1, queue="y", at=1)]
    policy.order(pending, ctx_for(state, running, pending, now=0.0))
    order = policy.order(pending, ctx_for(state, running, pending, now=100.0))
    assert [g.name for g in order] == ["y1", "x1"]
    expected = 8 * 0.5 * 100.0 / math.log(2)
    assert math.isclose(policy.decayed_gpu_s["x"], expected)
    heavy = QuotaPolicy(
        {"queues": [{"name": "x", "weight": 100}, {"name": "y"}]}, half_life_s=100.0
    )
    heavy.order(pending, ctx_for(state, running, pending, now=0.0))
    heavy.decayed_gpu_s["y"] = policy.decayed_gpu_s["x"] / 10
    assert [g.name for g in heavy.order(pending, ctx_for(state, running, pending, now=100.0))] == [
        "x1",
        "y1",
    ]


def test_quota_checks_guarantees_against_the_cluster() -> None:
    state = fresh_state(1)
    policy = QuotaPolicy({"queues": [{"name": "a", "guaranteed": {"gpu": 64}}]})
    try:
        policy.order([], ctx_for(state, [], []))
    except ValueError as err:
        assert "guarantee 64000 gpu_milli but the cluster has 8000" in str(err)
    else:
        raise AssertionError("an impossible guarantee was accepted")


# ---------------------------------------------------------------------------- the property
TENANTS = ("a", "b", "c")
PROPERTY_TREE = {
    "queues": [
        {"name": "a", "guaranteed": {"gpu": 8}},
        {"name": "b", "guaranteed": {"gpu": 4}},
        {"name": "c", "guaranteed": {"gpu": 4}},
    ]
}
shapes = st.tuples(st.sampled_from(TENANTS), st.sampled_from([1, 2, 4, 8]))


def place_running(state: ClusterState, drawn: list[tuple[str, int]]) -> list[RunningGang]:
    running = []
    for i, (tenant, gpus) in enumerate(drawn):
        g = job(f"run{i}", gpus, tenant=tenant, queue=tenant)
        result = place(g, state)
        if isinstance(result, Placement):
            state.assign(result, 0.0)
            running.append(RunningGang(g, result, 0.0, math.inf))
    return running


def assert_never_past_share_while_entitled_waits(
    policy: DrfPolicy | QuotaPolicy,
    running: list[RunningGang],
    pending: list[Gang],
    state: ClusterState,
    only_placeable: bool = False,
) -> None:
    """``only_placeable``: a waiting gang counts only if it could start on the cluster as the
    cycle left it (DRF is work conserving: a borrower need not wait for a gang that cannot
    start anyway)."""
    out = SchedulingCycle(state, policy).run(pending, running, now_s=0.0)
    started = [RunningGang(g, p, 0.0, math.inf) for g, p in out.started]
    final = usage_by([*running, *started], lambda g: g.tenant)
    ctx = ctx_for(state, [*running, *started], pending)
    capacity = cluster_capacity(state.compiled)

    def within(tenant: str, used: Resources) -> bool:
        if isinstance(policy, DrfPolicy):
            return used.dominant_share(capacity) <= policy.entitlement(tenant, ctx) + 1e-9
        return used.fits_within(policy.tree.queues[tenant].guaranteed)

    for tenant in {g.tenant for g, _ in out.started}:
        if within(tenant, final.get(tenant, Resources())):
            continue
        for g in pending:
            if g.name in out.waiting and g.tenant != tenant:
                if only_placeable and not isinstance(place(g, state), Placement):
                    continue
                assert not within(g.tenant, final.get(g.tenant, Resources()) + gang_demand(g)), (
                    f"{tenant} went past its share while {g.name} waited within {g.tenant}'s"
                )


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(shapes, max_size=5), st.lists(shapes, min_size=1, max_size=8))
def test_drf_property(running: list[tuple[str, int]], pending: list[tuple[str, int]]) -> None:
    state = fresh_state(2)
    live = place_running(state, running)
    gangs = [job(f"p{i}", gpus, tenant=t, queue=t, at=i) for i, (t, gpus) in enumerate(pending)]
    assert_never_past_share_while_entitled_waits(DrfPolicy(), live, gangs, state, True)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(shapes, max_size=5), st.lists(shapes, min_size=1, max_size=8))
def test_quota_property(running: list[tuple[str, int]], pending: list[tuple[str, int]]) -> None:
    state = fresh_state(2)
    live = place_running(state, running)
    gangs = [job(f"p{i}", gpus, tenant=t, queue=t, at=i) for i, (t, gpus) in enumerate(pending)]
    assert_never_past_share_while_entitled_waits(QuotaPolicy(PROPERTY_TREE), live, gangs, state)
