"""The transport-free planner: gang planning, quorum, reservations, binds, concurrency."""

from __future__ import annotations

import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phalanx.extender.binding import BindOutcome, RecordingBinder
from phalanx.extender.planner import Planner, PlannerConfig
from phalanx.extender.planner_evict import LEFT_GRACE_S
from phalanx.policies.registry import get_preemption_policy, get_queue_policy, get_scorer
from phalanx.topology.presets import cluster_preset

from tests.fake_apiserver import kube_pod, phalanx_gang


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def planner(nodes: int = 4, ttl: float = 60.0, preemption: str | None = None):
    clock = Clock()
    cluster = cluster_preset(f"dgx-h100:{nodes}")
    p = Planner(
        cluster,
        get_queue_policy("fifo"),
        scorer=get_scorer("topology"),
        preemption=get_preemption_policy(preemption, min_runtime_s=0) if preemption else None,
        config=PlannerConfig(reservation_ttl_s=ttl),
        clock=clock,
    )
    return p, [n.name for n in cluster.nodes], clock


def member(gang: str, i: int, size: int, gpus: int = 8, **kw):
    return kube_pod(f"{gang}-{i}", gpus=gpus, annotations=phalanx_gang(gang, size), **kw)


def test_whole_gang_is_planned_on_first_member_and_later_members_follow():
    p, names, _ = planner()
    for i in range(3):
        p.observe_pod(member("g", i, 3))
    first = p.filter(member("g", 0, 3), names)
    assert len(first.passing) == 1
    holding = p.state.holdings["ml/g"]
    assert len(holding.placement.members) == 3
    plan = {m.member: m.node for m in holding.placement.members}
    assert p.filter(member("g", 2, 3), names).passing == [plan["g-2"]]
    p.state.check_invariants()


def test_state_is_unchanged_by_a_rejected_gang():
    p, names, _ = planner(nodes=2)
    before = p.compiled.mutable_state_bytes()
    for i in range(3):
        p.observe_pod(member("big", i, 3))
    decision = p.filter(member("big", 0, 3), names)
    assert decision.passing == [] and set(decision.unresolvable) == set(names)
    assert "[never_fits]" in decision.unresolvable[names[0]], "3 x 8 GPUs on 2 nodes"
    assert p.compiled.mutable_state_bytes() == before


def test_spec_that_never_fits_is_unresolvable():
    p, names, _ = planner(nodes=2)
    decision = p.filter(kube_pod("huge", gpus=16), names)
    assert decision.passing == [] and set(decision.unresolvable) == set(names)
    bad = kube_pod("bad", annotations={"phalanx.io/required-level": "galaxy"})
    assert "galaxy" in p.filter(bad, names).unresolvable[names[0]]


def test_unknown_nodes_are_reported():
    p, names, _ = planner(nodes=2)
    decision = p.filter(kube_pod("s"), [*names, "ghost"])
    assert decision.failed["ghost"].startswith("node is not in Phalanx's topology")
    assert len(decision.passing) == 1


def test_prioritize_scores_line_up_with_the_offered_list():
    p, names, _ = planner(nodes=4)
    pod = kube_pod("s")
    (node,) = p.filter(pod, names).passing
    offered = ["ghost", *reversed(names), node]
    scores = p.prioritize(pod, offered).tolist()
    assert len(scores) == len(offered) and scores[0] == 0
    assert scores[offered.index(node)] == 10 and scores[-1] < 10
    assert all(s < 10 for n, s in zip(offered[1:-1], scores[1:-1], strict=True) if n != node)
    assert p.prioritize(pod, [node]).tolist() == [10]
    assert p.prioritize(pod, ["ghost"]).tolist() == [0]


def test_reservation_expires_when_members_never_bind():
    p, names, clock = planner(ttl=30)
    for i in range(2):
        p.observe_pod(member("e", i, 2))
    p.filter(member("e", 0, 2), names)
    assert "ml/e" in p.state.holdings
    clock.now += 31
    assert p.expire() == 1
    assert p.state.holdings == {} and p.stats.reservation_expiries == 1
    assert int(p.compiled.free_gpu_count.sum()) == 32


def test_partly_bound_gang_keeps_bound_members_on_expiry():
    p, names, clock = planner(ttl=30)
    for i in range(2):
        p.observe_pod(member("e", i, 2))
    node = p.filter(member("e", 0, 2), names).passing[0]
    assert p.bind("ml", "e-0", "uid-ml-e-0", node, RecordingBinder()) == ""
    clock.now += 31
    p.expire()
    holding = p.state.holdings["ml/e"]
    assert [m.member for m in holding.placement.members] == ["e-0"]
    again = p.filter(member("e", 1, 2), names)
    assert len(again.passing) == 1, "the member that came late is planned again"
    p.state.check_invariants()


def test_a_bind_never_changes_the_pod_a_request_carried():
    """The decoder hands one decoded pod to every request carrying the same bytes, so the
    Binding's annotations go on a new dict, kept by the planner."""
    import copy

    p, names, _ = planner()
    pod = kube_pod("s")
    as_sent = copy.deepcopy(pod)
    node = p.filter(pod, names).passing[0]
    assert p.bind("ml", "s", "uid-ml-s", node, RecordingBinder()) == ""
    assert pod == as_sent
    kept = p.pods["ml/s"].pod["metadata"]["annotations"]
    assert "phalanx.io/gpu-ids" in kept


def test_bind_failure_keeps_the_plan_and_repeat_bind_is_idempotent():
    p, names, _ = planner()
    node = p.filter(kube_pod("s"), names).passing[0]

    class Failing:
        def bind(self, request):
            return BindOutcome(False, "apiserver down")

    assert p.bind("ml", "s", "uid-ml-s", node, Failing()) == "apiserver down"
    assert "ml/pod/s" in p.state.holdings
    binder = RecordingBinder()
    assert p.bind("ml", "s", "uid-ml-s", node, binder) == ""
    assert p.bind("ml", "s", "uid-ml-s", node, binder) == ""
    assert len(binder.records) == 1
    assert "already bound" in p.bind("ml", "s", "uid-ml-s", names[-1], binder)
    assert "unknown to Phalanx" in p.bind("ml", "nobody", "", node, binder)


def test_deleting_a_reserved_member_releases_the_gang_for_replanning():
    p, names, _ = planner()
    for i in range(2):
        p.observe_pod(member("d", i, 2))
    p.filter(member("d", 0, 2), names)
    p.forget_pod("ml", "d-1")
    assert p.state.holdings == {}
    assert "1/2 members present" in p.filter(member("d", 0, 2), names).failed[names[0]]


def test_preemption_evicts_whole_lower_priority_gangs_and_binds_after_they_leave():
    p, names, _ = planner(nodes=2, preemption="priority")
    binder = RecordingBinder()
    for i in range(2):
        pod = member("low", i, 2)
        p.observe_pod(pod)
    for i in range(2):
        node = p.filter(member("low", i, 2), names).passing[0]
        assert p.bind("ml", f"low-{i}", f"uid-ml-low-{i}", node, binder) == ""
    high = kube_pod("high", gpus=8)
    high["spec"]["priority"] = 1000
    waiting = p.filter(high, names)
    assert waiting.passing == [] and "[preempting]" in next(iter(waiting.failed.values()))
    assert sorted(k for k, _ in p.actions.evictions) == ["ml/low-0", "ml/low-1"]
    assert p.preempt(high, {n: [] for n in names}) == {}, "kube-scheduler deletes nothing"
    planned = p.state.holdings["ml/pod/high"].placement.members[0].node
    p.forget_pod("ml", "low-0", "uid-ml-low-0")
    p.forget_pod("ml", "low-1", "uid-ml-low-1")
    assert p.filter(high, names).passing == [planned]


def test_a_node_just_left_by_victims_is_not_given_up_when_kube_scheduler_still_rejects_it():
    """Phalanx's watch can see the victims go before kube-scheduler's cache does: for a while
    the nominated node still fails kube-scheduler's filters, and the member retries."""
    p, names, clock = planner(nodes=1, preemption="priority")
    low = member("low", 0, 1)
    node = p.filter(low, names).passing[0]
    assert p.bind("ml", "low-0", "uid-ml-low-0", node, RecordingBinder()) == ""
    high = kube_pod("high", gpus=8)
    high["spec"]["priority"] = 1000
    assert p.filter(high, names).passing == []
    p.forget_pod("ml", "low-0", "uid-ml-low-0")
    high.setdefault("status", {})["nominatedNodeName"] = node
    assert p.filter(high, []).passing == []  # the nominated pass failed in kube-scheduler
    planned = p.state.holdings["ml/pod/high"].placement.members[0].node
    assert planned == node and p.stats.replans == 0, "not planned again"
    clock.now += LEFT_GRACE_S
    assert p.filter(high, names).passing == [node]
    p.state.check_invariants()


def test_a_refused_eviction_gives_the_victim_its_room_back():
    p, names, _ = planner(nodes=1, preemption="priority")
    binder = RecordingBinder()
    low = member("low", 0, 1)
    node = p.filter(low, names).passing[0]
    assert p.bind("ml", "low-0", "uid-ml-low-0", node, binder) == ""
    high = kube_pod("high", gpus=8)
    high["spec"]["priority"] = 1000
    assert p.filter(high, names).passing == []
    assert "ml/pod/high" in p.state.holdings
    from phalanx.extender.pod_actions import PodRef

    p.eviction_failed(PodRef("ml", "low-0", "uid-ml-low-0"), "refused by a PodDisruptionBudget")
    assert "ml/pod/high" not in p.state.holdings and not p.leaving
    assert int(p.compiled.free_gpu_count.sum()) == 0, "the victim holds its GPUs again"
    p.state.check_invariants()


def test_concurrent_filters_and_binds_keep_the_ledger_consistent():
    p, names, _ = planner(nodes=16)
    binder = RecordingBinder()
    errors: list[str] = []

    def worker(w: int) -> None:
        for i in range(4):
            pod = kube_pod(f"p{w}-{i}", gpus=2)
            decision = p.filter(pod, names)
            if decision.passing:
                err = p.bind("ml", f"p{w}-{i}", f"uid-ml-p{w}-{i}", decision.passing[0], binder)
                if err:
                    errors.append(err)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(binder.records) == 32
    p.state.check_invariants()
    assert int(p.compiled.free_gpu_count.sum()) == 16 * 8 - 64


ops = st.lists(
    st.tuples(
        st.sampled_from(["filter", "bind", "delete", "finish", "tick"]),
        st.integers(0, 5),
        st.integers(1, 3),
    ),
    max_size=40,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_any_sequence_keeps_invariants_and_never_double_allocates(seq):
    p, names, clock = planner(nodes=3, ttl=20)
    binder = RecordingBinder()
    for op, gang_no, size in seq:
        gang = f"g{gang_no}"
        pods = [member(gang, i, size, gpus=4) for i in range(size)]
        if op == "filter":
            for pod in pods:
                p.filter(pod, names)
        elif op == "bind":
            for pod in pods:
                name = pod["metadata"]["name"]
                decision = p.filter(pod, names)
                if decision.passing:
                    p.bind("ml", name, pod["metadata"]["uid"], decision.passing[0], binder)
        elif op == "delete":
            p.forget_pod("ml", f"{gang}-0")
        elif op == "finish":
            for pod in pods:
                pod["status"]["phase"] = "Succeeded"
                p.observe_pod(pod)
        else:
            clock.now += 15
            p.expire()
        p.state.check_invariants()
    held: dict[tuple[str, int], str] = {}
    for key, holding in p.state.holdings.items():
        for m in holding.placement.members:
            for g in m.gpus:
                assert (m.node, g) not in held, (
                    f"GPU {m.node}/{g} held by {held[(m.node, g)]} and {key}"
                )
                held[(m.node, g)] = key


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_finished_pod_is_rejected_not_planned(phase: str):
    p, names, _ = planner()
    pod = kube_pod("done")
    pod["status"]["phase"] = phase
    assert p.filter(pod, names).unresolvable
