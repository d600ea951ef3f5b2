"""Gangs through the real kube-scheduler and ``phalanx serve`` (marker ``cluster``).

Each scenario gets its own nodes (exported from a preset), a freshly started extender and a
namespace. Pods never run (no kubelet): "bound" means kube-scheduler's bind, through the
extender's bind verb, set ``spec.nodeName``.
"""

from __future__ import annotations

import json
import random
import time
import urllib.request
from collections import defaultdict

import pytest
from kubernetes import client

from tests.cluster.objects import (
    DIALECTS,
    NATIVE,
    PHALANX,
    GangSpec,
    bound,
    cordon,
    create_gang,
    create_group,
    delete_pods,
    ensure_priority_class,
    gang_pod,
    group_object,
    plain_pod,
    pods_of,
    wait_for,
    wait_gang_bound,
)

pytestmark = pytest.mark.cluster

BIND_TIMEOUT_S = 30.0
WAIT_WHOLE_S = 8.0
"""How long a gang that must wait is watched for a stray bind."""
GPUS_PER_NODE = 8
FAILOVER_LIMIT_S = 15.0
"""The standby must lead within this long of the leader's death (the chart's Lease is 10 s)."""


def assert_no_gpu_twice(pods) -> None:
    """No GPU index is given to two pods on one node, and no node gives more than it has."""
    used: dict[str, list[int]] = defaultdict(list)
    for pod in pods:
        if pod.spec.node_name:
            ids = (pod.metadata.annotations or {}).get("phalanx.io/gpu-ids", "")
            used[pod.spec.node_name] += [int(i) for i in ids.split(",") if i]
    for node, ids in used.items():
        assert len(ids) == len(set(ids)), f"GPU given twice on {node}: {sorted(ids)}"
        assert len(ids) <= GPUS_PER_NODE, f"{node} gave {len(ids)} GPUs"


def assert_on_plan(pods) -> None:
    """Every bound member is on the node its gang's plan gave its rank."""
    for pod in pods:
        notes = pod.metadata.annotations or {}
        if not pod.spec.node_name:
            continue
        rank = int(notes["phalanx.io/rank"])
        assert notes["phalanx.io/gang-nodes"].split(",")[rank] == pod.spec.node_name
        assert json.loads(notes["phalanx.io/gang-plan"])


def metric(scenario, name: str) -> float:
    text = urllib.request.urlopen(f"{scenario.plane.extender_url}/metrics", timeout=5).read()
    total = 0.0
    for line in text.decode().splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def debug_state(scenario) -> dict:
    url = f"{scenario.plane.extender_url}/debug/state"
    return json.loads(urllib.request.urlopen(url, timeout=5).read())


def test_gang_created_in_random_order_is_bound_whole_on_its_plan(kube_cluster):
    scenario = kube_cluster("dgx-h100:8")
    gang = GangSpec("llm", members=4, gpus=8)
    create_gang(scenario.api, gang, scenario.namespace, rng=random.Random(7))
    placed = wait_gang_bound(scenario.api, scenario.namespace, gang, BIND_TIMEOUT_S)
    assert len(set(placed.values())) == gang.members
    pods = pods_of(scenario.api, scenario.namespace, gang.name)
    assert_on_plan(pods)
    for pod in pods:
        assert len(pod.metadata.annotations["phalanx.io/gpu-ids"].split(",")) == gang.gpus
    assert_no_gpu_twice(pods)


def test_two_gangs_that_cannot_fit_together_run_one_after_the_other(kube_cluster):
    scenario = kube_cluster("dgx-h100:4")
    first, second = GangSpec("first", 3, 8), GangSpec("second", 3, 8)
    create_gang(scenario.api, first, scenario.namespace)
    wait_gang_bound(scenario.api, scenario.namespace, first, BIND_TIMEOUT_S)
    create_gang(scenario.api, second, scenario.namespace, rng=random.Random(1))
    time.sleep(WAIT_WHOLE_S)
    assert bound(pods_of(scenario.api, scenario.namespace, second.name)) == {}
    delete_pods(scenario.api, scenario.namespace, first.name)
    wait_gang_bound(scenario.api, scenario.namespace, second, BIND_TIMEOUT_S * 2)
    pods = pods_of(scenario.api, scenario.namespace)
    assert_on_plan(pods)
    assert_no_gpu_twice(pods)


def test_gang_that_can_never_fit_holds_nothing(kube_cluster):
    scenario = kube_cluster("dgx-h100:2")
    never = GangSpec("never", members=3, gpus=8)
    create_gang(scenario.api, never, scenario.namespace)
    small = GangSpec("small", members=2, gpus=8)
    create_gang(scenario.api, small, scenario.namespace)
    wait_gang_bound(scenario.api, scenario.namespace, small, BIND_TIMEOUT_S)
    time.sleep(WAIT_WHOLE_S / 2)
    assert bound(pods_of(scenario.api, scenario.namespace, never.name)) == {}


def failed_scheduling_notes(scenario, pod: str) -> list[str]:
    """The notes of the FailedScheduling events kube-scheduler wrote for ``pod``, read through
    the Events API (events.k8s.io/v1)."""
    events = client.EventsV1Api(scenario.api).list_namespaced_event(scenario.namespace).items
    return [
        e.note or ""
        for e in events
        if e.reason == "FailedScheduling" and e.regarding and e.regarding.name == pod
    ]


@pytest.mark.parametrize("dialect", [PHALANX, NATIVE])
def test_gang_that_can_never_fit_is_told_why_and_not_retried_for_preemption(kube_cluster, dialect):
    """Issue #12, defect 8: 3 x 8 GPUs on two 8-GPU nodes is answered unresolvable with the
    reason; kube-scheduler copies it into the pods' events and condition, and tries no
    preemption for it; the gang holds nothing."""
    scenario = kube_cluster("dgx-h100:2")
    never = GangSpec(f"never-{dialect}", members=3, gpus=8, dialect=dialect)
    create_gang(scenario.api, never, scenario.namespace)
    first = never.pod_names()[0]
    notes = wait_for(
        "a FailedScheduling event with Phalanx's reason",
        lambda: [n for n in failed_scheduling_notes(scenario, first) if "[never_fits]" in n],
        BIND_TIMEOUT_S,
    )
    reason = f"gang {scenario.namespace}/{never.name} [never_fits]: capacity: the gang needs 3 "
    assert reason in notes[0], notes
    assert "with nothing running the cluster has 2 free nodes" in notes[0]
    if dialect == PHALANX:
        # kube-scheduler's PostFilter skips the nodes the extender called unresolvable, and
        # the pods wait in its unschedulable queue: no more filters come for them
        assert "Preemption is not helpful for scheduling" in notes[0], notes
        time.sleep(WAIT_WHOLE_S / 4)
        requests = metric(scenario, "phalanx_extender_request_seconds_count")
        time.sleep(WAIT_WHOLE_S / 2)
        assert metric(scenario, "phalanx_extender_request_seconds_count") == requests
    else:
        # the pod-group cycle stops at the first member Phalanx rejects; the others are told
        # that the group's minCount cannot be met
        other = never.pod_names()[1]
        wait_for(
            "the other members' events",
            lambda: any("minCount (3)" in n for n in failed_scheduling_notes(scenario, other)),
            BIND_TIMEOUT_S,
        )
    pod = client.CoreV1Api(scenario.api).read_namespaced_pod(first, scenario.namespace)
    condition = next(c for c in pod.status.conditions if c.type == "PodScheduled")
    assert condition.status == "False" and reason in condition.message
    assert bound(pods_of(scenario.api, scenario.namespace, never.name)) == {}
    assert debug_state(scenario)["reservations"] == []


def test_native_gang_waits_in_kube_scheduler_until_its_quorum_exists(kube_cluster):
    """With the native API kube-scheduler's GangScheduling plugin holds the members before
    they reach the extender (PreEnqueue) until minCount pods exist; then the pod-group cycle
    sends them to Phalanx together and the gang is bound whole."""
    scenario = kube_cluster("dgx-h100:4")
    gang = GangSpec("quorum-native", members=3, gpus=8, dialect=NATIVE)
    group = group_object(gang, scenario.namespace)
    assert group is not None
    create_group(scenario.api, group, scenario.namespace)
    core = client.CoreV1Api(scenario.api)
    requests_before = metric(scenario, "phalanx_extender_request_seconds_count")
    for i in range(gang.members - 1):
        core.create_namespaced_pod(scenario.namespace, gang_pod(gang, i, scenario.namespace))
    time.sleep(WAIT_WHOLE_S / 2)
    assert metric(scenario, "phalanx_extender_request_seconds_count") == requests_before
    assert failed_scheduling_notes(scenario, f"{gang.name}-0") == []
    last = gang_pod(gang, gang.members - 1, scenario.namespace)
    core.create_namespaced_pod(scenario.namespace, last)
    wait_gang_bound(scenario.api, scenario.namespace, gang, BIND_TIMEOUT_S)
    assert_on_plan(pods_of(scenario.api, scenario.namespace, gang.name))


def test_pods_without_gpus_never_reach_the_extender(kube_cluster):
    scenario = kube_cluster("dgx-h100:2")
    filters_before = metric(scenario, "phalanx_extender_request_seconds_count")
    core = client.CoreV1Api(scenario.api)
    for i in range(3):
        core.create_namespaced_pod(scenario.namespace, plain_pod(f"web-{i}", scenario.namespace))
    wait_for(
        "plain pods bound",
        lambda: len(bound(core.list_namespaced_pod(scenario.namespace).items)) == 3,
        BIND_TIMEOUT_S,
    )
    assert metric(scenario, "phalanx_extender_request_seconds_count") == filters_before


def test_kube_scheduler_asks_no_scores_after_a_one_node_filter(kube_cluster):
    """kube-scheduler scores nodes only when more than one is feasible: a lone feasible node is
    the suggested host (``schedulePod`` in ``schedule_one.go``), extenders' prioritize
    included. Phalanx's filter leaves each pod its planned node, so with ``prioritizeVerb``
    configured, a gang and a plain GPU pod are bound after filters alone."""
    scenario = kube_cluster("dgx-h100:4")
    assert any(e.get("prioritizeVerb") for e in scenario.plane.scheduler_config["extenders"])
    prioritize = 'phalanx_extender_request_seconds_count{verb="prioritize"}'
    filters = 'phalanx_extender_request_seconds_count{verb="filter"}'
    prioritized_before, filtered_before = metric(scenario, prioritize), metric(scenario, filters)
    gang = GangSpec("no-scores", members=3, gpus=8)
    create_gang(scenario.api, gang, scenario.namespace, rng=random.Random(3))
    core = client.CoreV1Api(scenario.api)
    core.create_namespaced_pod(scenario.namespace, plain_pod("one-gpu", scenario.namespace, gpus=1))
    wait_gang_bound(scenario.api, scenario.namespace, gang, BIND_TIMEOUT_S)
    wait_for(
        "the plain GPU pod bound",
        lambda: core.read_namespaced_pod("one-gpu", scenario.namespace).spec.node_name,
        BIND_TIMEOUT_S,
    )
    assert metric(scenario, filters) >= filtered_before + gang.members + 1
    assert metric(scenario, prioritize) == prioritized_before


def test_extender_killed_between_binds_and_restarted(kube_cluster):
    scenario = kube_cluster("dgx-h100:8")
    gang = GangSpec("resilient", members=8, gpus=8)
    create_gang(scenario.api, gang, scenario.namespace, rng=random.Random(3))
    wait_for(
        "the first member bound",
        lambda: bound(pods_of(scenario.api, scenario.namespace, gang.name)),
        BIND_TIMEOUT_S,
    )
    scenario.plane.kill_extender()
    bound_at_kill = len(bound(pods_of(scenario.api, scenario.namespace, gang.name)))
    scenario.plane.start_extender()
    wait_gang_bound(scenario.api, scenario.namespace, gang, BIND_TIMEOUT_S * 2)
    pods = pods_of(scenario.api, scenario.namespace, gang.name)
    assert_on_plan(pods)
    assert_no_gpu_twice(pods)
    assert bound_at_kill >= 1


def test_planned_node_cordoned_before_its_member_binds(kube_cluster):
    """One member is held back by a scheduling gate: the others wait at the bind barrier and
    none binds; the held member's planned node (its nomination) is cordoned; once the gate is
    lifted that member is planned again elsewhere and the gang binds whole."""
    scenario = kube_cluster("dgx-h100:6")
    gang = GangSpec("gated", members=4, gpus=8)
    core = client.CoreV1Api(scenario.api)
    held_name = f"{gang.name}-{gang.members - 1}"
    for i in range(gang.members):
        pod = gang_pod(gang, i, scenario.namespace)
        if i == gang.members - 1:
            pod["spec"]["schedulingGates"] = [{"name": "phalanx-test/hold"}]
        core.create_namespaced_pod(scenario.namespace, pod)
    planned = wait_for(
        "the held member nominated for its planned node",
        lambda: core.read_namespaced_pod(held_name, scenario.namespace).status.nominated_node_name,
        BIND_TIMEOUT_S,
    )
    time.sleep(WAIT_WHOLE_S / 2)
    assert not bound(pods_of(scenario.api, scenario.namespace, gang.name)), "bound short"
    cordon(scenario.api, planned)
    core.patch_namespaced_pod(held_name, scenario.namespace, {"spec": {"schedulingGates": None}})
    done = wait_gang_bound(scenario.api, scenario.namespace, gang, BIND_TIMEOUT_S * 2)
    assert done[held_name] != planned
    assert_no_gpu_twice(pods_of(scenario.api, scenario.namespace, gang.name))


def test_a_gang_planned_from_a_narrowed_offer_stays_in_one_scalable_unit(kube_cluster):
    """300 nodes: kube-scheduler (default percentageOfNodesToScore) stops filtering at 144
    feasible nodes, starting where the last pod stopped, so the extender sees rotating windows.
    A 16-member gang is still planned in one scalable unit and every member binds on its plan:
    members whose planned node a window left out retry on their nominated node."""
    scenario = kube_cluster("dgx-h100:300")
    gang = GangSpec("windowed", members=16, gpus=8)
    create_gang(scenario.api, gang, scenario.namespace, rng=random.Random(13))
    placed = wait_gang_bound(scenario.api, scenario.namespace, gang, BIND_TIMEOUT_S * 2)
    pods = pods_of(scenario.api, scenario.namespace, gang.name)
    assert_on_plan(pods)
    assert_no_gpu_twice(pods)
    units = {
        n["metadata"]["labels"]["phalanx.io/su"]
        for n in scenario.nodes
        if n["metadata"]["name"] in set(placed.values())
    }
    assert len(units) == 1, units
    assert debug_state(scenario)["stats"]["replans"] == 0


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_gang_dialect_is_bound_whole(kube_cluster, dialect):
    scenario = kube_cluster("dgx-h100:4")
    gang = GangSpec(f"g-{dialect}", members=3, gpus=8, dialect=dialect)
    create_gang(scenario.api, gang, scenario.namespace, rng=random.Random(5))
    wait_gang_bound(scenario.api, scenario.namespace, gang, BIND_TIMEOUT_S)
    pods = pods_of(scenario.api, scenario.namespace, gang.name)
    assert_on_plan(pods)
    assert_no_gpu_twice(pods)
    if dialect == NATIVE:
        # found by discovery: 1.37 serves the Workload API at v1beta1 only
        versions = debug_state(scenario)["group_versions"]
        assert versions["native"] == "scheduling.k8s.io/v1beta1"


PREEMPTION_SETTINGS = {
    "evictionGracePeriodSeconds": 0,  # no kubelet here to end a graceful termination
    "policies": {"preemption": "priority", "preemptionOptions": {"min_runtime_s": 0}},
}
BOUND_AFTER_VICTIMS_S = 5.0
HTTP_TOO_MANY_REQUESTS = 429
LOW_GANG_LABELS = {"phalanx-test/gang": "low"}
RUNNING_READY = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
"""What a kubelet reports for a started pod."""


def test_priority_preemption_evicts_a_whole_gang(kube_cluster):
    """Every node is full of a low-priority gang, so kube-scheduler's own filters reject the
    high-priority members and only its preemption asks the extender: Phalanx evicts the whole
    low gang through the Eviction API (kube-scheduler deletes nothing), and the high gang is
    bound whole soon after the victims are gone; the victim, created again, does not preempt
    back."""
    scenario = kube_cluster("dgx-h100:4", serve=PREEMPTION_SETTINGS)
    ensure_priority_class(scenario.api, "phalanx-test-low", 100)
    ensure_priority_class(scenario.api, "phalanx-test-high", 1000)
    low = GangSpec("low", 4, 8, priority_class="phalanx-test-low")
    create_gang(scenario.api, low, scenario.namespace)
    wait_gang_bound(scenario.api, scenario.namespace, low, BIND_TIMEOUT_S)
    high = GangSpec("high", 2, 8, priority_class="phalanx-test-high")
    create_gang(scenario.api, high, scenario.namespace)
    wait_for(
        "the whole low gang evicted",
        lambda: not pods_of(scenario.api, scenario.namespace, low.name),
        BIND_TIMEOUT_S,
    )
    gone_at = time.monotonic()
    wait_gang_bound(scenario.api, scenario.namespace, high, BIND_TIMEOUT_S)
    bound_after_s = time.monotonic() - gone_at
    print(f"high gang bound {bound_after_s:.1f} s after the last victim was gone")
    assert bound_after_s <= BOUND_AFTER_VICTIMS_S
    actions = debug_state(scenario)["api"]["pod_actions"]
    assert actions["evictions"] == low.members and actions["evictions_refused"] == 0
    pods = pods_of(scenario.api, scenario.namespace, high.name)
    assert_on_plan(pods)
    assert_no_gpu_twice(pods)
    # the victim comes back (as its job controller would make it): it waits, nothing is evicted
    create_gang(scenario.api, low, scenario.namespace)
    time.sleep(WAIT_WHOLE_S)
    assert not bound(pods_of(scenario.api, scenario.namespace, low.name))
    assert len(bound(pods_of(scenario.api, scenario.namespace, high.name))) == high.members
    assert debug_state(scenario)["api"]["pod_actions"]["evictions"] == low.members


@pytest.mark.parametrize("allowed", [0, 1])
def test_a_gang_under_a_disruption_budget_is_not_preempted(kube_cluster, allowed):
    """A PodDisruptionBudget covers the running low gang and allows ``allowed`` evictions:
    none (the apiserver refuses every eviction, shown with a dry-run one), or one (the
    apiserver would evict one pod and refuse the rest, leaving the victim partly running).
    Phalanx reads the budget from its watch with the apiserver's rules and does not choose the
    gang as a victim: no eviction is even tried, the low gang keeps running whole, and
    kube-scheduler, answered with no victims, deletes nothing either.

    No kubelet and no kube-controller-manager run here, so the test writes what they would:
    the pods' status once started (Running, Ready; the apiserver lets any eviction of a
    Pending pod through) and the budget's status as the disruption controller computes it."""
    scenario = kube_cluster("dgx-h100:4", serve=PREEMPTION_SETTINGS)
    ensure_priority_class(scenario.api, "phalanx-test-low", 100)
    ensure_priority_class(scenario.api, "phalanx-test-high", 1000)
    low = GangSpec("low", 4, 8, priority_class="phalanx-test-low")
    create_gang(scenario.api, low, scenario.namespace)
    wait_gang_bound(scenario.api, scenario.namespace, low, BIND_TIMEOUT_S)
    core, policy = client.CoreV1Api(scenario.api), client.PolicyV1Api(scenario.api)
    for name in low.pod_names():
        core.patch_namespaced_pod_status(name, scenario.namespace, {"status": RUNNING_READY})
    budget = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "low"},
        "spec": {
            "minAvailable": low.members - allowed,
            "selector": {"matchLabels": LOW_GANG_LABELS},
        },
    }
    policy.create_namespaced_pod_disruption_budget(scenario.namespace, budget)
    computed = {
        "observedGeneration": 1,
        "disruptionsAllowed": allowed,
        "currentHealthy": low.members,
        "desiredHealthy": low.members - allowed,
        "expectedPods": low.members,
    }
    policy.patch_namespaced_pod_disruption_budget_status(
        "low", scenario.namespace, {"status": computed}
    )
    eviction = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": "low-0", "namespace": scenario.namespace},
        "deleteOptions": {"dryRun": ["All"]},
    }
    if not allowed:
        with pytest.raises(client.ApiException) as refused:
            core.create_namespaced_pod_eviction("low-0", scenario.namespace, eviction)
        assert refused.value.status == HTTP_TOO_MANY_REQUESTS, "the apiserver honours it"
        assert "disruption budget" in refused.value.body
    wait_for("the budget watched", lambda: debug_state(scenario)["disruption_budgets"], 10.0)
    high = GangSpec("high", 2, 8, priority_class="phalanx-test-high")
    create_gang(scenario.api, high, scenario.namespace)
    time.sleep(WAIT_WHOLE_S)
    assert len(bound(pods_of(scenario.api, scenario.namespace, low.name))) == low.members
    assert not bound(pods_of(scenario.api, scenario.namespace, high.name))
    actions = debug_state(scenario)["api"]["pod_actions"]
    assert actions["evictions"] == 0 and actions["evictions_refused"] == 0


def test_standby_takes_over_when_the_leader_is_killed_mid_gang(kube_cluster, control_plane):
    """Two replicas as the chart deploys them (leader election on a Lease, readiness follows
    leadership, a Service in front): SIGKILL the leader between a 16-member gang's binds."""
    scenario = kube_cluster("dgx-h100:20")
    plane = control_plane
    plane.start_replicas(2)
    leader = wait_for("one leader", plane.leader, BIND_TIMEOUT_S)
    gang = GangSpec("ha", members=16, gpus=8)
    create_gang(scenario.api, gang, scenario.namespace, rng=random.Random(11))
    wait_for(
        "the first member bound",
        lambda: bound(pods_of(scenario.api, scenario.namespace, gang.name)),
        BIND_TIMEOUT_S,
    )
    plans_before = {
        p.metadata.name: p.metadata.annotations.get("phalanx.io/gang-nodes")
        for p in pods_of(scenario.api, scenario.namespace, gang.name)
        if p.spec.node_name
    }
    killed_at = time.monotonic()
    plane.processes[leader].kill()
    new_leader = wait_for("the standby to lead", plane.leader, FAILOVER_LIMIT_S)
    takeover_s = time.monotonic() - killed_at
    assert new_leader != leader
    print(f"standby {new_leader} led {takeover_s:.1f} s after {leader} was killed")
    assert takeover_s <= FAILOVER_LIMIT_S
    wait_gang_bound(scenario.api, scenario.namespace, gang, BIND_TIMEOUT_S * 2)
    pods = pods_of(scenario.api, scenario.namespace, gang.name)
    assert_on_plan(pods)
    assert_no_gpu_twice(pods)
    plan = {p.metadata.annotations["phalanx.io/gang-nodes"] for p in pods}
    assert len(plan) == 1, "every member carries the same plan"
    assert set(plans_before.values()) <= plan, "the standby kept the leader's plan"
