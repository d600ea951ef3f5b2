"""Issue #12, defect 7: every extender decision goes through the shared scheduling cycle.

Late members pass queue admission, the configured solver time limit reaches the solver, LAS
orders by the attained service of bound pods, preemption is checked as the cycle checks its
own, and the FGD scorer is built with the run's seed and workload as the simulator builds it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import phalanx.scheduler.exact as exact
from phalanx.extender.binding import RecordingBinder
from phalanx.extender.config import PolicyConfig, ServeConfig, parse_config
from phalanx.extender.planner import Planner, PlannerConfig
from phalanx.extender.runtime import planner_factory
from phalanx.policies.registry import get_preemption_policy, get_queue_policy
from phalanx.policies.scoring.fgd_workload import Workload
from phalanx.scheduler.interfaces import PreemptionDecision
from phalanx.topology.presets import cluster_preset

from tests.fake_apiserver import kube_pod, phalanx_gang


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(queue, nodes: int = 2, **kw) -> tuple[Planner, list[str], Clock]:
    clock = Clock()
    cluster = cluster_preset(f"dgx-h100:{nodes}")
    planner = Planner(cluster, queue, clock=clock, **kw)
    return planner, [n.name for n in cluster.nodes], clock


def pod(gang: str, i: int, size: int = 1, gpus: int = 8, queue: str = "", **kw) -> dict:
    annotations = phalanx_gang(gang, size)
    if queue:
        annotations["phalanx.io/queue"] = queue
    return kube_pod(f"{gang}-{i}", gpus=gpus, annotations=annotations, **kw)


def place_and_bind(planner: Planner, manifest: dict, names: list[str]) -> str:
    decision = planner.filter(manifest, names)
    assert len(decision.passing) == 1, decision
    node = decision.passing[0]
    meta = manifest["metadata"]
    assert planner.bind(meta["namespace"], meta["name"], meta["uid"], node, RecordingBinder()) == ""
    return node


def test_late_members_pass_queue_admission():
    """A queue limited to 8 GPUs never holds 16 through members that arrive after the plan."""
    tree = {"queues": [{"name": "a", "guaranteed": {"gpu": 8}, "borrowing_limit": {"gpu": 0}}]}
    p, names, _ = make(get_queue_policy("quota", tree=tree))
    place_and_bind(p, pod("g", 0, queue="a"), names)
    late = p.filter(pod("g", 1, queue="a"), names)
    assert late.passing == []
    assert "[quota]" in " ".join(late.failed.values())
    held = sum(len(m.gpus) for h in p.state.holdings.values() for m in h.placement.members)
    assert held == 8
    p.state.check_invariants()


def test_the_configured_time_limit_reaches_the_solver(monkeypatch):
    seen: list[float] = []
    solve = exact.solve

    def spy(*args, **kw):
        seen.append(kw["time_limit_s"])
        return solve(*args, **kw)

    monkeypatch.setattr(exact, "solve", spy)
    config = PlannerConfig(solver="exact", time_limit_s=0.25)
    p, names, _ = make(get_queue_policy("fifo"), config=config)
    place_and_bind(p, pod("g", 0), names)  # first plan, through the cycle
    place_and_bind(p, pod("g", 1), names)  # late member
    assert seen == [0.25, 0.25]


def test_las_orders_by_attained_service_of_bound_pods():
    """A gang that ran (and was preempted) waits behind a newcomer with no service; FIFO,
    which LAS used to become in the extender, would start it first (earlier name, same age)."""
    p, names, clock = make(get_queue_policy("las", thresholds_gpu_s=(100.0,)), nodes=1)
    place_and_bind(p, pod("a", 0), names)
    clock.now += 1000.0
    assert p.attained(clock.now) == {"ml/a": 8000.0}
    p.forget_pod("ml", "a-0")  # evicted
    again = pod("a", 0, uid="uid-a-again")
    p.observe_pod(again)
    p.observe_pod(pod("b", 0))
    assert p.filter(again, names).passing == []
    assert set(p.state.holdings) == {"ml/b"}


def test_attained_service_counts_from_the_pods_start_time():
    p, _, clock = make(get_queue_policy("fifo"))
    running = pod("r", 0, gpus=4)
    running["spec"]["nodeName"] = "dgx-h100-0"
    running["status"] = {"phase": "Running", "startTime": "1970-01-01T00:15:00Z"}
    p.observe_pod(running)
    assert p.attained(clock.now) == {"ml/r": 4 * (1000.0 - 900.0)}


class BogusPreemption:
    """Names a running victim, with a placement that still does not fit once it is gone."""

    name = "bogus"

    def __init__(self, planner: Planner) -> None:
        self.planner = planner

    def select_victims(self, preemptor, ctx, place):
        state = self.planner.state
        victim = state.holdings["ml/v"].placement
        other = state.holdings["ml/w"].placement
        return PreemptionDecision(
            preemptor.name, (victim.gang,), replace(other, gang=preemptor.name), "bogus"
        )


def test_preemption_goes_through_the_cycles_checks():
    p, names, _ = make(get_queue_policy("fifo"))
    p.preemption = BogusPreemption(p)
    p.cycle_config = replace(p.cycle_config, preemption=p.preemption)
    place_and_bind(p, pod("v", 0), names)
    place_and_bind(p, pod("w", 0), names)
    waiting = pod("x", 0)
    assert p.filter(waiting, names).passing == []
    assert p.preempt(waiting, {n: [] for n in names}) == {}
    assert set(p.state.holdings) == {"ml/v", "ml/w"}


def test_preemption_needs_admission():
    """A gang its queue would not admit evicts nobody for room it may not take."""
    tree = {"queues": [{"name": "a", "guaranteed": {"gpu": 8}, "borrowing_limit": {"gpu": 0}}]}
    p, names, _ = make(
        get_queue_policy("quota", tree=tree),
        preemption=get_preemption_policy("priority", min_runtime_s=0),
    )
    place_and_bind(p, pod("low", 0, gpus=8, queue="a"), names)
    big2 = pod("big", 1, size=2, gpus=8, queue="a")
    big = pod("big", 0, size=2, gpus=8, queue="a")
    for manifest in (big, big2):
        manifest["spec"]["priority"] = 100
        p.observe_pod(manifest)
    assert p.preempt(big, {n: [] for n in names}) == {}


def test_the_fgd_scorer_gets_the_seed_and_a_workload_in_the_extender():
    config = ServeConfig(policies=PolicyConfig(scorer="fgd", seed=7))
    planner = planner_factory(config)(cluster_preset("dgx-h100:1"))
    scorer = planner.scorer
    seeded = np.random.default_rng(7).bit_generator.state
    assert scorer.tie_breaker.rng.bit_generator.state == seeded
    assert scorer.workload == Workload.default()
    assert parse_config({"policies": {"scorer": "fgd", "seed": 7}}).policies.seed == 7


def test_attained_service_is_computed_only_for_policies_that_read_it():
    from phalanx.policies.preemption.priority import PriorityPreemption
    from phalanx.policies.queue.simple import FifoPolicy
    from phalanx.policies.queue.tiresias import TiresiasPolicy
    from phalanx.scheduler.interfaces import reads_attained_service

    assert not reads_attained_service(FifoPolicy(), PriorityPreemption())
    assert reads_attained_service(TiresiasPolicy())
    assert reads_attained_service(FifoPolicy(), PriorityPreemption(rank="las"))
