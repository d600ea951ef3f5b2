"""The gang protocol pieces that need no cluster: kube-scheduler's search window, nominations
of planned members, plans kept through narrowed offers, and the bind barrier."""

from __future__ import annotations

import asyncio

import pytest
from phalanx.extender.bind_barrier import BindBarrier
from phalanx.extender.binding import RecordingBinder
from phalanx.extender.config import parse_config
from phalanx.extender.planner import Planner, PlannerConfig
from phalanx.extender.planner_protocol import feasible_nodes_to_find
from phalanx.policies.registry import get_queue_policy, get_scorer
from phalanx.topology.presets import cluster_preset

from tests.fake_apiserver import kube_pod, phalanx_gang


@pytest.mark.parametrize(
    ("nodes", "percentage", "window"),
    [
        (50, 0, 50),  # fewer than 100 nodes: all of them
        (200, 0, 100),  # 48 % of 200 = 96, at least 100
        (1000, 0, 420),  # 50 - 1000/125 = 42 %
        (5000, 0, 500),  # 50 - 40 = 10 %
        (10000, 0, 500),  # 50 - 80 < 5: 5 %
        (1000, 100, 1000),
        (1000, 30, 300),
    ],
)
def test_search_window_is_kube_schedulers(nodes, percentage, window):
    assert feasible_nodes_to_find(nodes, percentage) == window


WINDOW = 144
"""kube-scheduler's search window on 300 nodes: 50 - 300 / 125 = 48 % of them."""


def make(nodes: int = 8, percentage: int = 0) -> tuple[Planner, list[str]]:
    cluster = cluster_preset(f"dgx-h100:{nodes}")
    p = Planner(
        cluster,
        get_queue_policy("fifo"),
        scorer=get_scorer("topology"),
        config=PlannerConfig(percentage_of_nodes_to_score=percentage),
    )
    return p, [n.name for n in cluster.nodes]


def member(gang: str, i: int, size: int, nominated: str = ""):
    pod = kube_pod(f"{gang}-{i}", gpus=8, annotations=phalanx_gang(gang, size))
    if nominated:
        pod.setdefault("status", {})["nominatedNodeName"] = nominated
    return pod


def plan_of(p: Planner, key: str) -> dict[str, str]:
    return {m.member: m.node for m in p.state.holdings[key].placement.members}


def test_a_new_plan_nominates_every_member_but_the_one_filtered():
    p, names = make()
    for i in range(3):
        p.observe_pod(member("g", i, 3))
    (node,) = p.filter(member("g", 0, 3), names).passing
    plan = plan_of(p, "ml/g")
    assert node == plan["g-0"]
    assert sorted(p.actions.nominations) == sorted((f"ml/g-{i}", plan[f"g-{i}"]) for i in (1, 2))


def test_a_cleared_nomination_is_set_again():
    p, names = make()
    for i in range(2):
        p.observe_pod(member("g", i, 2))
    p.filter(member("g", 0, 2), names)
    planned = plan_of(p, "ml/g")["g-1"]
    p.observe_pod(member("g", 1, 2, nominated=planned))  # the status patch came back
    p.actions.nominations.clear()
    p.observe_pod(member("g", 1, 2))  # kube-scheduler cleared it after a failed cycle
    assert list(p.actions.nominations) == [("ml/g-1", planned)]


def test_a_window_without_the_planned_node_keeps_the_plan():
    p, names = make(nodes=300)  # kube-scheduler stops at 144 feasible nodes of 300
    for i in range(2):
        p.observe_pod(member("g", i, 2))
    p.filter(member("g", 0, 2), names)
    planned = plan_of(p, "ml/g")["g-1"]
    window = [n for n in names if n != planned][:WINDOW]
    p.actions.nominations.clear()
    decision = p.filter(member("g", 1, 2), window)
    assert decision.passing == [] and "[reserved]" in decision.failed[window[0]]
    assert plan_of(p, "ml/g")["g-1"] == planned and p.stats.replans == 0
    assert list(p.actions.nominations) == [("ml/g-1", planned)]
    assert p.filter(member("g", 1, 2), [planned]).passing == [planned], "the nominated pass"


def test_a_complete_offer_without_the_planned_node_replans_the_member():
    p, names = make()
    for i in range(2):
        p.observe_pod(member("g", i, 2))
    p.filter(member("g", 0, 2), names)
    planned = plan_of(p, "ml/g")["g-1"]
    rest = [n for n in names if n != planned]  # 7 of 8 nodes: everything that passed
    (node,) = p.filter(member("g", 1, 2), rest).passing
    assert node != planned and p.stats.replans == 1


def test_the_nominated_node_rejected_by_kube_scheduler_replans_the_member():
    p, names = make(nodes=300)
    for i in range(2):
        p.observe_pod(member("g", i, 2))
    p.filter(member("g", 0, 2), names)
    planned = plan_of(p, "ml/g")["g-1"]
    window = [n for n in names if n != planned][:WINDOW]
    # the pod names its planned node and kube-scheduler still left it out: its filters failed
    (node,) = p.filter(member("g", 1, 2, nominated=planned), window).passing
    assert node != planned and node in window and p.stats.replans == 1


def test_first_plans_on_a_window_use_the_whole_cluster():
    """A 16-member gang planned from a 144-node window of 300 stays in one scalable unit."""
    p, names = make(nodes=300)
    size = 16
    for i in range(size):
        p.observe_pod(member("big", i, size))
    window = names[::2][:WINDOW]  # as long as the window, scattered over every SU
    p.filter(member("big", 0, size), window)
    plan = p.state.holdings["ml/big"].placement
    assert plan.level in ("su", "rail", "node", "nvlink"), plan.level
    assert len({m.node for m in plan.members}) == size


def bind_all(p: Planner, barrier: BindBarrier, pods: list[str], plan: dict[str, str]):
    binder = RecordingBinder()

    async def one(name: str) -> str:
        error = await barrier.wait(p, "ml", name)
        return error or p.bind("ml", name, f"uid-ml-{name}", plan[name], binder)

    async def run() -> list[str]:
        return list(await asyncio.gather(*(one(n) for n in pods)))

    return asyncio.run(run()), binder


def test_the_barrier_binds_a_gang_together_once_all_arrive():
    p, names = make()
    for i in range(3):
        p.observe_pod(member("g", i, 3))
    p.filter(member("g", 0, 3), names)
    plan = plan_of(p, "ml/g")
    errors, binder = bind_all(p, BindBarrier(5.0), ["g-0", "g-1", "g-2"], plan)
    assert errors == ["", "", ""] and len(binder.records) == 3


def test_the_barrier_binds_nothing_when_a_member_never_arrives():
    p, names = make()
    for i in range(3):
        p.observe_pod(member("g", i, 3))
    p.filter(member("g", 0, 3), names)
    plan = plan_of(p, "ml/g")
    errors, binder = bind_all(p, BindBarrier(0.3), ["g-0", "g-1"], plan)
    assert all("[bind_barrier]" in e and "g-2" in e for e in errors), errors
    assert not binder.records and not p.gangs["ml/g"].arrived
    assert "ml/g" in p.state.holdings, "the plan is kept for the next try"


def test_serve_settings_for_the_protocol():
    cfg = parse_config(
        {"bindBarrierSeconds": 0, "percentageOfNodesToScore": 40, "evictionGracePeriodSeconds": 5}
    )
    assert (cfg.bind_barrier_s, cfg.percentage_of_nodes_to_score) == (0.0, 40)
    assert cfg.eviction_grace_period_s == 5
    assert parse_config({}).eviction_grace_period_s is None


def test_retried_filters_of_waiting_gangs_reuse_the_last_cycle_until_something_changes():
    p, names = make(nodes=2)
    binder = RecordingBinder()
    for i in range(2):
        p.observe_pod(member("run", i, 2))
    for i in range(2):
        (node,) = p.filter(member("run", i, 2), names).passing
        assert p.bind("ml", f"run-{i}", f"uid-ml-run-{i}", node, binder) == ""
    for g in ("a", "b"):
        for i in range(2):
            p.observe_pod(member(g, i, 2))
    first = p.filter(member("a", 0, 2), names)
    hits = p._memo.hits
    again = p.filter(member("a", 1, 2), names)
    assert again.failed == first.failed and p._memo.hits == hits + 1
    p.forget_pod("ml", "run-0", "uid-ml-run-0")  # capacity freed: a cycle runs again
    p.forget_pod("ml", "run-1", "uid-ml-run-1")
    assert len(p.filter(member("a", 0, 2), names).passing) == 1


def test_unplaced_answers_are_kept_only_while_the_capacity_is_the_same():
    from phalanx.scheduler.gang import Gang, Member, MemberRequest
    from phalanx.scheduler.placement import Unplaceable
    from phalanx.scheduler.state import ClusterState
    from phalanx.scheduler.unplaced_cache import UnplacedCache

    def gang(name: str, gpus: int) -> Gang:
        return Gang(name, (Member(f"{name}-0", MemberRequest(gpus=gpus)),))

    state = ClusterState(cluster_preset("dgx-h100:2").compile())
    cache = UnplacedCache()
    cache.put(gang("a", 8), state, Unplaceable("a", "no room", "capacity"))
    known = cache.get(gang("b", 8), state)
    assert known is not None and known.gang == "b", "a gang of the same shape"
    assert cache.get(gang("c", 4), state) is None, "another shape"
    state.changes += 1
    assert cache.get(gang("b", 8), state) is None


def test_a_lone_pod_missing_from_a_window_is_planned_again_inside_it():
    p, names = make(nodes=300)
    for g in ("a", "b"):
        p.observe_pod(kube_pod(f"{g}-0", gpus=8))
    (node,) = p.filter(kube_pod("a-0", gpus=8), names).passing
    planned_b = plan_of(p, "ml/pod/b-0")["b-0"]
    assert not p.actions.nominations, "lone pods are not nominated"
    window = [n for n in names if n not in (planned_b, node)][:WINDOW]
    (moved,) = p.filter(kube_pod("b-0", gpus=8), window).passing
    assert moved in window and moved != planned_b
