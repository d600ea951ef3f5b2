"""Never fits vs not now (issue #12, defect 8): a gang no state of this cluster could hold is
answered in FailedAndUnresolvableNodes with the reason, holds nothing and blocks no one; the
gangs that only wait get a code of their own: no capacity now, fragmented, quota, waiting for
members, waiting behind."""

from __future__ import annotations

from phalanx.extender.planner import Planner, PlannerConfig
from phalanx.extender.why_not import waiting_text
from phalanx.policies.registry import get_queue_policy, get_scorer
from phalanx.scheduler.cycle import SchedulingCycle
from phalanx.scheduler.gang import Gang, MemberRequest
from phalanx.scheduler.state import ClusterState
from phalanx.topology.presets import cluster_preset

from tests.fake_apiserver import kube_pod, phalanx_gang


def make(spec: str = "superpod-h100:64", strict: bool = False):
    cluster = cluster_preset(spec)
    p = Planner(
        cluster,
        get_queue_policy("fifo", strict=strict),
        scorer=get_scorer("topology"),
        config=PlannerConfig(reservation_ttl_s=60),
        clock=lambda: 1000.0,
    )
    return p, [n.name for n in cluster.nodes]


def gang(p: Planner, name: str, size: int, gpus: int = 8, created: str = "", **annotations):
    pods = []
    for i in range(size):
        pod = kube_pod(
            f"{name}-{i}", gpus=gpus, annotations={**phalanx_gang(name, size), **annotations}
        )
        if created:
            pod["metadata"]["creationTimestamp"] = created
        p.observe_pod(pod)
        pods.append(pod)
    return pods


def busy(p: Planner, node: str, gpus: int, name: str) -> None:
    """A pod someone else bound: ``gpus`` of ``node`` are taken."""
    pod = kube_pod(name, gpus=gpus)
    pod["spec"]["nodeName"] = node
    p.observe_pod(pod)


def reason(decision) -> tuple[str, str]:
    """('unresolvable' | 'failed', the one reason every offered node carries)."""
    kind = "unresolvable" if decision.unresolvable else "failed"
    reasons = set((decision.unresolvable or decision.failed).values())
    assert len(reasons) == 1, reasons
    return kind, reasons.pop()


def test_more_members_than_the_cluster_has_nodes_never_fits_and_holds_nothing():
    p, names = make()
    pods = gang(p, "huge", 300)
    kind, why = reason(p.filter(pods[0], names))
    assert kind == "unresolvable"
    assert why == (
        "gang ml/huge [never_fits]: capacity: the gang needs 300 free nodes of 8 GPUs; with "
        "nothing running the cluster has 64 free nodes"
    )
    assert p.state.holdings == {}
    assert reason(p.filter(pods[7], names)) == (kind, why), "the next member: same answer"


def test_a_required_level_no_domain_of_which_is_big_enough_never_fits():
    p, names = make()
    pods = gang(p, "wide", 40, **{"phalanx.io/required-level": "su"})
    kind, why = reason(p.filter(pods[0], names))
    assert kind == "unresolvable"
    assert why.startswith("gang ml/wide [never_fits]: required_level su: the gang needs 40 free")
    assert why.endswith("the largest su has 32 free nodes")
    assert p.state.holdings == {}


def test_a_member_larger_than_every_node_never_fits():
    p, names = make()
    (pod,) = gang(p, "fat", 1, gpus=16)
    kind, why = reason(p.filter(pod, names))
    assert kind == "unresolvable" and "[never_fits]" in why
    assert "asks for gpus 16 but the largest node it may use has 8" in why


def test_a_full_cluster_is_no_capacity_now_not_never():
    p, names = make("dgx-h100:4")
    for i, node in enumerate(names[:3]):
        busy(p, node, 8, f"bg-{i}")
    pods = gang(p, "later", 2)
    kind, why = reason(p.filter(pods[0], names))
    assert kind == "failed"
    assert why.startswith("gang ml/later [capacity]: no capacity now: the cluster has 1 free node")


def test_free_gpus_scattered_over_nodes_are_fragmented_not_capacity():
    p, names = make("dgx-h100:8")
    for i, node in enumerate(names[1:]):
        busy(p, node, 4, f"half-{i}")
    pods = gang(p, "pair", 2)
    # kube-scheduler offers only the node with 8 free GPUs (the others fail its GPU fit)
    kind, why = reason(p.filter(pods[0], names[:1]))
    assert kind == "failed"
    assert why.startswith("gang ml/pair [fragmented]: 36 GPUs are free")
    assert "room for 1 of them (the most on one node is 8)" in why


def test_waiting_for_members_says_how_many():
    p, names = make("dgx-h100:4")
    pod = kube_pod("q-0", annotations=phalanx_gang("q", 3))
    assert reason(p.filter(pod, names)) == (
        "failed",
        "gang ml/q [waiting_for_members]: 1/3 members present",
    )


def test_waiting_behind_names_the_blocked_gang_and_the_position():
    p, names = make("dgx-h100:4", strict=True)
    busy(p, names[0], 8, "bg-0")
    head = gang(p, "head", 4, created="2026-01-01T00:00:00Z")
    small = gang(p, "small", 1, created="2026-01-01T00:01:00Z")
    assert reason(p.filter(head[0], names))[1].startswith("gang ml/head [capacity]")
    kind, why = reason(p.filter(small[0], names))
    assert (kind, why) == (
        "failed",
        "gang ml/small [waiting_behind]: waiting behind blocked gang 'ml/head' "
        "(position 2 of 2 in the queue)",
    )


def test_a_gang_that_never_fits_does_not_block_the_queue():
    p, names = make("dgx-h100:2", strict=True)
    never = gang(p, "never", 3, created="2026-01-01T00:00:00Z")
    small = gang(p, "small", 2, created="2026-01-01T00:01:00Z")
    assert reason(p.filter(never[0], names))[0] == "unresolvable"
    assert len(p.filter(small[0], names).passing) == 1, "strict FIFO, yet not behind 'never'"
    assert "ml/small" in p.state.holdings and "ml/never" not in p.state.holdings


def test_a_gang_that_never_fit_is_asked_again_when_the_cluster_grows():
    p, names = make("dgx-h100:2")
    pods = gang(p, "grow", 3)
    assert reason(p.filter(pods[0], names))[0] == "unresolvable"
    bigger = cluster_preset("dgx-h100:4")
    p.set_cluster(bigger)
    assert len(p.filter(pods[0], [n.name for n in bigger.nodes]).passing) == 1


def test_the_cycle_codes_quota_refusals():
    state = ClusterState(cluster_preset("dgx-h100:1").compile())

    class Refusing:
        name = "refusing"

        def order(self, pending, ctx):
            return list(pending)

        def admit(self, g, ctx):
            return "quota: queue 'a' would exceed its limit (gpus 16 > 8)"

        def accept(self, g, placement, ctx):
            return None

        def after_blocked(self, g, result, ctx):
            return True

    out = SchedulingCycle(state, Refusing()).run(
        [Gang.uniform("ml/q", 1, MemberRequest(gpus=1))], [], now_s=0.0
    )
    assert out.codes == {"ml/q": "quota"}
    assert waiting_text("ml/q", out.codes["ml/q"], out.waiting["ml/q"]) == (
        "gang ml/q [quota]: queue 'a' would exceed its limit (gpus 16 > 8)"
    )
