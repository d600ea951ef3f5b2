"""PodDisruptionBudgets in Phalanx's whole-gang preemption (issue #12: evictions honour them).

The budget reading mirrors the apiserver's eviction check (a budget whose status is behind its
generation allows nothing; else ``status.disruptionsAllowed``); a gang whose bound pods a budget
would not let go all at once is no preemption candidate, so no victim is left partly evicted.
"""

from __future__ import annotations

from phalanx.extender.binding import RecordingBinder
from phalanx.extender.disruption_budgets import Budget, DisruptionBudgets
from phalanx.extender.planner import Planner
from phalanx.policies.registry import get_preemption_policy, get_queue_policy
from phalanx.topology.presets import cluster_preset

from tests.fake_apiserver import kube_pod, phalanx_gang


def pdb(
    name: str,
    *,
    labels: dict | None = None,
    expressions: list | None = None,
    allowed: int = 0,
    generation: int = 1,
    observed: int | None = 1,
    namespace: str = "ml",
) -> dict:
    selector: dict = {}
    if labels is not None:
        selector["matchLabels"] = labels
    if expressions is not None:
        selector["matchExpressions"] = expressions
    status: dict = {"disruptionsAllowed": allowed}
    if observed is not None:
        status["observedGeneration"] = observed
    return {
        "metadata": {"name": name, "namespace": namespace, "generation": generation},
        "spec": {"selector": selector, "minAvailable": 1},
        "status": status,
    }


READY = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
"""What the kubelet reports for a running, ready pod."""


def running(pod: dict, ready: bool = True) -> dict:
    status = READY if ready else {"phase": "Running", "conditions": []}
    return {**pod, "status": status}


def labelled(name: str, labels: dict, namespace: str = "ml", ready: bool = True) -> dict:
    return running(kube_pod(name, namespace=namespace, labels=labels), ready)


def test_selector_matching_follows_label_selector_rules():
    b = Budget.of(
        pdb(
            "b",
            labels={"app": "train"},
            expressions=[
                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "team", "operator": "Exists"},
                {"key": "zone", "operator": "NotIn", "values": ["x"]},
            ],
        )
    )
    assert b is not None
    assert b.selects({"app": "train", "tier": "a", "team": "t"})
    assert b.selects({"app": "train", "tier": "b", "team": "t", "zone": "y"})
    assert not b.selects({"app": "train", "tier": "c", "team": "t"})
    assert not b.selects({"app": "train", "tier": "a", "team": "t", "canary": "1"})
    assert not b.selects({"app": "train", "tier": "a"})
    assert not b.selects({"app": "train", "tier": "a", "team": "t", "zone": "x"})
    assert not b.selects({"app": "serve", "tier": "a", "team": "t"})
    assert Budget.of(pdb("all")).selects({})  # policy/v1: an empty selector selects every pod


def test_a_gang_is_refused_when_more_pods_count_against_a_budget_than_it_allows():
    budgets = DisruptionBudgets()
    budgets.replace([pdb("train", labels={"app": "train"}, allowed=1)])
    one = [labelled("a", {"app": "train"})]
    two = [*one, labelled("b", {"app": "train"})]
    assert budgets.refusal(one) == ""
    assert "ml/train allows 1 eviction(s), the gang has 2" in budgets.refusal(two)
    assert budgets.refusal([labelled("c", {"app": "other"})]) == ""
    assert budgets.refusal([labelled("d", {"app": "train"}, namespace="other")]) == ""


def test_pods_the_apiserver_evicts_whatever_the_budget_do_not_count():
    """Pending, finished and deleting pods are evicted without a budget check; a pod that is
    not Ready passes when the budget says AlwaysAllow or is healthy enough."""
    budgets = DisruptionBudgets()
    budgets.replace([pdb("train", labels={"app": "train"}, allowed=0)])
    train = {"app": "train"}
    pending = kube_pod("p", labels=train)
    finished = {**kube_pod("f", labels=train), "status": {"phase": "Succeeded"}}
    deleting = labelled("d", train)
    deleting["metadata"] = {**deleting["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"}
    assert budgets.refusal([pending, finished, deleting]) == ""
    unready = labelled("u", train, ready=False)
    assert budgets.refusal([unready]), "an unready pod still uses the budget by default"
    lenient = pdb("train", labels=train, allowed=0)
    lenient["spec"]["unhealthyPodEvictionPolicy"] = "AlwaysAllow"
    budgets.replace([lenient])
    assert budgets.refusal([unready]) == ""
    assert budgets.refusal([labelled("r", train)]), "a ready pod uses the budget"
    healthy = pdb("train", labels=train, allowed=0)
    healthy["status"].update(currentHealthy=3, desiredHealthy=3)
    budgets.replace([healthy])
    assert budgets.refusal([unready]) == ""


def test_a_pod_under_two_budgets_cannot_be_evicted():
    budgets = DisruptionBudgets()
    budgets.replace([pdb("a", labels={"app": "x"}, allowed=9), pdb("b", allowed=9)])
    assert "more than one PodDisruptionBudget (a, b)" in budgets.refusal(
        [labelled("x", {"app": "x"})]
    )


def test_a_budget_whose_status_is_behind_allows_nothing():
    """The apiserver refuses every eviction under a budget the disruption controller has not
    processed yet (observedGeneration < generation): so does Phalanx's reading."""
    budgets = DisruptionBudgets()
    budgets.upsert(pdb("new", labels={"app": "train"}, allowed=5, generation=2, observed=1))
    assert budgets.refusal([labelled("a", {"app": "train"})])
    budgets.upsert(pdb("new", labels={"app": "train"}, allowed=5, generation=2, observed=2))
    assert budgets.refusal([labelled("a", {"app": "train"})]) == ""
    budgets.delete(pdb("new"))
    assert not budgets


def test_malformed_budgets_protect_nothing_and_do_not_raise():
    budgets = DisruptionBudgets()
    bad = pdb("bad", expressions=[{"key": "k", "operator": "Near"}])
    budgets.replace([bad, {"metadata": "nope"}, {"spec": {"selector": []}}])
    assert not budgets
    assert budgets.refusal([labelled("a", {"k": "v"})]) == ""


def _bound_low_gang(p: Planner, names: list[str], labels: dict) -> None:
    binder = RecordingBinder()
    pods = [
        kube_pod(f"low-{i}", gpus=8, labels=labels, annotations=phalanx_gang("low", 2))
        for i in range(2)
    ]
    for pod in pods:
        p.observe_pod(pod)
    for i, pod in enumerate(pods):
        node = p.filter(pod, names).passing[0]
        assert p.bind("ml", f"low-{i}", f"uid-ml-low-{i}", node, binder) == ""
        bound = {**pod, "spec": {**pod["spec"], "nodeName": node}}
        p.observe_pod(running(bound))  # the kubelet started it


def _planner() -> tuple[Planner, list[str]]:
    cluster = cluster_preset("dgx-h100:2")
    p = Planner(
        cluster,
        get_queue_policy("fifo"),
        preemption=get_preemption_policy("priority", min_runtime_s=0),
    )
    return p, [n.name for n in cluster.nodes]


def test_a_gang_its_budget_protects_is_not_evicted():
    p, names = _planner()
    _bound_low_gang(p, names, {"app": "low"})
    p.budgets.replace([pdb("low", labels={"app": "low"}, allowed=1)])
    high = kube_pod("high", gpus=8)
    high["spec"]["priority"] = 1000
    answer = p.filter(high, names)
    assert answer.passing == []
    assert list(p.actions.evictions) == [], "no pod of the protected gang is evicted"
    assert "ml/pod/high" not in p.state.holdings
    p.state.check_invariants()
    # the budget goes (or allows both): the gang is evicted whole
    p.budgets.replace([pdb("low", labels={"app": "low"}, allowed=2)])
    assert p.filter(high, names).passing == []
    assert sorted(k for k, _ in p.actions.evictions) == ["ml/low-0", "ml/low-1"]
    assert "ml/pod/high" in p.state.holdings


def test_the_label_index_selects_what_a_full_scan_selects():
    """Budgets are looked up by their first matchLabels item; whatever the mix of selectors,
    the budgets found for a pod are those a test of every budget finds."""
    import random

    rng = random.Random(3)
    keys, values = ["app", "job", "team", "tier"], ["a", "b", "c"]
    objs = []
    for i in range(60):
        labels = {k: rng.choice(values) for k in rng.sample(keys, rng.randint(0, 2))}
        expressions = None
        if rng.random() < 0.4:
            op = rng.choice(["In", "NotIn", "Exists", "DoesNotExist"])
            expr = {"key": rng.choice(keys), "operator": op}
            if op in ("In", "NotIn"):
                expr["values"] = rng.sample(values, 2)
            expressions = [expr]
        objs.append(pdb(f"b{i:02d}", labels=labels, expressions=expressions, allowed=99))
    budgets = DisruptionBudgets()
    budgets.replace(objs)
    parsed = [b for b in (Budget.of(o) for o in objs) if b is not None]
    for _ in range(300):
        labels = {k: rng.choice(values) for k in rng.sample(keys, rng.randint(0, 4))}
        want = sorted(b.name for b in parsed if b.selects(labels))
        got = [b.name for b in budgets._select("ml", budgets._by_namespace["ml"], labels)]
        assert got == want
