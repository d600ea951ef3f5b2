"""Queue orders with known right answers: FIFO, priority, SJF, Tiresias LAS, Themis."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st
from phalanx.policies.estimates import RuntimeEstimator
from phalanx.policies.queue.finish_time import FinishTimeFairnessPolicy
from phalanx.policies.queue.las import LasPolicy
from phalanx.policies.registry import get_queue_policy
from phalanx.scheduler.gang import Gang, MemberRequest
from phalanx.scheduler.interfaces import QueueContext, RunningGang
from phalanx.scheduler.placement import CostBreakdown, Placement
from phalanx.scheduler.state import ClusterState
from phalanx.topology.presets import cluster_preset

STATE = ClusterState(cluster_preset("dgx-h100:2").compile())


def job(name: str, gpus: int = 1, at: float = 0.0, **kw: object) -> Gang:
    return Gang.uniform(name, 1, MemberRequest(gpus=gpus), submit_time_s=at, **kw)


def ctx(
    now: float = 0.0, attained: dict[str, float] | None = None, pending: Sequence[Gang] = ()
) -> QueueContext:
    return QueueContext(now, STATE, [], dict(attained or {}), pending=list(pending))


def names(gangs: list[Gang]) -> list[str]:
    return [g.name for g in gangs]


def test_fifo_by_submission_then_name() -> None:
    gangs = [job("c", at=2), job("b", at=1), job("a", at=1)]
    assert names(get_queue_policy("fifo").order(gangs, ctx())) == ["a", "b", "c"]


def test_priority_then_fifo() -> None:
    gangs = [
        job("old-low", at=0, priority=0),
        job("new-high", at=5, priority=3),
        job("old-high", at=1, priority=3),
    ]
    assert names(get_queue_policy("priority").order(gangs, ctx())) == [
        "old-high",
        "new-high",
        "old-low",
    ]


def test_sjf_ranks_by_estimated_gpu_time() -> None:
    gangs = [
        job("wide-short", gpus=8, runtime_estimate_s=100),  # 800 GPU-s
        job("narrow-long", gpus=1, runtime_estimate_s=500),  # 500 GPU-s
        job("cpu-only", gpus=0, runtime_estimate_s=600),  # counts one GPU: 600 GPU-s
        job("unknown", gpus=1),  # default 3600 s
    ]
    order = get_queue_policy("sjf").order(gangs, ctx())
    assert names(order) == ["narrow-long", "cpu-only", "wide-short", "unknown"]


def test_sjf_learns_from_completions_of_the_queue() -> None:
    policy = get_queue_policy("sjf", default_runtime_s=10_000)
    a, b = job("a", queue="fast"), job("b", queue="slow", runtime_estimate_s=50)
    assert names(policy.order([a, b], ctx())) == ["b", "a"]
    policy.record_completion(job("done", queue="fast"), 20.0)  # type: ignore[attr-defined]
    assert names(policy.order([a, b], ctx())) == ["a", "b"]


def test_runtime_estimator_expected_end() -> None:
    est = RuntimeEstimator(default_s=100.0, window=3)
    g = job("g")
    nowhere = Placement("g", (), "node", "node:none", CostBreakdown())
    assert est.expected_end_s(RunningGang(g, nowhere, 10.0, math.inf), now_s=0.0) == 110.0
    assert est.expected_end_s(RunningGang(g, nowhere, 10.0, 50.0), now_s=0.0) == 50.0
    # past its estimate, no history yet: as long again as it has run (70 s), not "ends now"
    assert est.expected_end_s(RunningGang(g, nowhere, 10.0, 50.0), now_s=80.0) == 150.0
    for runtime in (1.0, 2.0, 3.0, 100.0):
        est.record_completion(g, runtime)
    assert est.estimate_s(g) == 3.0, "median of the last three"
    with pytest.raises(ValueError, match="not a duration"):
        est.record_completion(g, -1.0)
    with pytest.raises(ValueError, match="must be positive"):
        RuntimeEstimator(default_s=0.0)


def test_las_discretises_attained_service() -> None:
    policy = LasPolicy(thresholds_gpu_s=[100.0, 1000.0])
    gangs = [
        job("veteran", at=0),
        job("middle", at=1),
        job("fresh", at=2),
        job("fresh-early", at=1.5),
    ]
    attained = {"veteran": 5000.0, "middle": 500.0, "fresh": 99.0, "fresh-early": 0.0}
    c = ctx(attained=attained)
    assert [policy.queue_index(g, c) for g in gangs] == [2, 1, 0, 0]
    assert names(policy.order(gangs, c)) == ["fresh-early", "fresh", "middle", "veteran"]
    assert policy.rank(gangs[2], c) > policy.rank(gangs[0], c)


def test_las_promotes_starving_gangs_back_to_the_top_queue() -> None:
    policy = LasPolicy(thresholds_gpu_s=[100.0], promote_knob=2.0)
    g = job("starving", gpus=2, at=0.0)
    attained = {"starving": 400.0}  # ran 200 s on 2 GPUs
    assert policy.queue_index(g, ctx(now=500.0, attained=attained)) == 1  # waited 300 < 400
    assert policy.queue_index(g, ctx(now=700.0, attained=attained)) == 0  # waited 500 >= 400


def test_themis_serves_the_worst_off_first() -> None:
    policy = FinishTimeFairnessPolicy()
    waited = job("waited", gpus=1, at=0.0, runtime_estimate_s=100, tenant="a")
    fresh = job("fresh", gpus=1, at=90.0, runtime_estimate_s=100, tenant="b")
    c = ctx(now=100.0, pending=[waited, fresh])
    assert policy.rho(waited, c) == pytest.approx(2.0)  # 100 s waited + 100 s to run, alone 100 s
    assert policy.rho(fresh, c) == pytest.approx(1.1)
    assert names(policy.order([fresh, waited], c)) == ["waited", "fresh"]


def test_themis_isolated_time_stretches_gangs_wider_than_their_slice() -> None:
    policy = FinishTimeFairnessPolicy()
    tenants = [
        job(f"t{i}", gpus=1, at=0.0, runtime_estimate_s=100, tenant=f"t{i}") for i in range(4)
    ]
    wide = job("wide", gpus=8, at=0.0, runtime_estimate_s=100, tenant="t0")
    c = ctx(now=0.0, pending=[*tenants, wide])
    # 16 GPUs / 4 tenants = 4-GPU slices: alone the 8-GPU gang would take twice as long.
    assert policy.rho(wide, c) == pytest.approx(0.5)
    done = ctx(now=0.0, attained={"t1": 50.0}, pending=[*tenants, wide])
    assert policy.rho(tenants[1], done) == pytest.approx(0.5)


@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.floats(0, 100), st.integers(0, 3)),
        max_size=12,
        unique_by=lambda t: t,
    )
)
def test_orders_are_permutations(specs: list[tuple[int, float, int]]) -> None:
    gangs = [job(f"g{i}", gpus=g, at=at, priority=p) for i, (p, at, g) in enumerate(specs)]
    for name in ("fifo", "priority", "sjf", "las", "finish-time-fairness", "backfill", "drf"):
        order = get_queue_policy(name).order(gangs, ctx(pending=gangs))
        assert sorted(names(order)) == sorted(names(gangs))
