"""Gangs through the real kube-scheduler while the extender's API calls go through a
fault-injecting proxy (marker ``cluster``; issue #16, goal 3).

``phalanx serve`` talks to kube-apiserver only through :class:`ApiFaultProxy`; kube-scheduler
talks to it directly. While gangs are scheduled the proxy throttles (429 with Retry-After),
delays (2 s), hangs requests, cuts the watches, answers a watch with 410 Gone (an ``ERROR``
event, as after etcd compaction, and as a status), and loses the answers of binds the
apiserver carried out. Afterwards every gang is bound whole on its plan, no GPU is given twice,
``/debug/consistency`` finds the ledger equal to a fresh list of the cluster, and the filters,
answered from the watch cache, stayed fast the whole time (a probe measures them).
"""

from __future__ import annotations

import json
import statistics
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubernetes import client

from tests.cluster.api_fault_proxy import ApiFaultProxy, Fault
from tests.cluster.objects import (
    GangSpec,
    create_gang,
    pods_of,
    wait_for,
    wait_gang_bound,
)
from tests.cluster.test_cluster_gangs import assert_no_gpu_twice, assert_on_plan, metric

pytestmark = pytest.mark.cluster

SERVE = {"kube": {"watchTimeoutSeconds": 6, "requestTimeoutSeconds": 4, "bindTimeoutSeconds": 12}}
"""Short timeouts so that a hung list (4 s), a hung watch (6 + 10 s) and a hung bind (a third
of 12 s per try) end within a scenario."""
BIND_TIMEOUT_S = 45.0
PROBE_PERIOD_S = 0.05
PROBE_TIMEOUT_S = 5.0
FILTER_P99_LIMIT_S = 0.25
"""Far below every injected delay (2 s, hung requests of 4 s and more): a filter that waited
on the API would show it."""
BINDING = r"/pods/[^/]+/binding$"
NOT_SCHEDULED = "phalanx-test-nobody"
"""A schedulerName no scheduler serves: the probe's pods are seen by the extender's watch but
never scheduled."""


@dataclass
class FilterProbe:
    """Sends kube-scheduler's filter request for a pod that can never fit (more GPUs than any
    node has: the planner answers it without holding anything) every ``PROBE_PERIOD_S`` and
    keeps the round-trip times; errors and timeouts are kept apart."""

    url: str
    pod: dict[str, Any]
    nodes: list[str]
    seconds: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> FilterProbe:
        self._thread = threading.Thread(target=self._run, name="filter-probe", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(PROBE_TIMEOUT_S * 2)

    def _run(self) -> None:
        body = json.dumps({"Pod": self.pod, "NodeNames": self.nodes}).encode()
        while not self._stop.is_set():
            request = urllib.request.Request(
                f"{self.url}/filter", body, {"Content-Type": "application/json"}
            )
            start = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S) as reply:
                    doc = json.loads(reply.read())
                self.seconds.append(time.perf_counter() - start)
                if doc.get("NodeNames"):
                    self.errors.append(f"the never-fitting probe passed: {doc}")
            except Exception as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self._stop.wait(PROBE_PERIOD_S)

    def summary(self, since: int = 0, until: int | None = None) -> dict[str, float]:
        """Round trips ``since``..``until``: count, median, p99 and max in ms."""
        ordered = sorted(self.seconds[since:until])
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return {
            "count": len(ordered),
            "p50_ms": round(statistics.median(ordered) * 1000, 2),
            "p99_ms": round(p99 * 1000, 2),
            "max_ms": round(ordered[-1] * 1000, 2),
        }


def unscheduled_pod(name: str, namespace: str, gpus: int) -> dict[str, Any]:
    requests = {"cpu": "100m", "memory": "64Mi"}
    if gpus:
        requests["nvidia.com/gpu"] = str(gpus)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "schedulerName": NOT_SCHEDULED,
            "containers": [
                {
                    "name": "c",
                    "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": requests, "limits": requests},
                }
            ],
            "terminationGracePeriodSeconds": 0,
        },
    }


def start_probe(scenario) -> FilterProbe:
    """A real never-fitting pod (so the ledger and the cluster agree on it) and the probe."""
    core = client.CoreV1Api(scenario.api)
    core.create_namespaced_pod(
        scenario.namespace, unscheduled_pod("probe", scenario.namespace, gpus=9)
    )
    pod = scenario.api.sanitize_for_serialization(
        core.read_namespaced_pod("probe", scenario.namespace)
    )
    return FilterProbe(scenario.plane.extender_url, pod, scenario.node_names).start()


def extender_get(scenario, path: str, timeout_s: float = 30.0) -> dict[str, Any]:
    url = f"{scenario.plane.extender_url}{path}"
    return json.loads(urllib.request.urlopen(url, timeout=timeout_s).read())


def wait_consistent(scenario, timeout_s: float = 30.0) -> dict[str, Any]:
    """``/debug/consistency`` clean (the watches may need a moment to deliver the last
    events after the faults stop)."""
    return wait_for(
        "the ledger to equal the cluster (/debug/consistency)",
        lambda: (r := extender_get(scenario, "/debug/consistency")).get("ok") and r,
        timeout_s,
    )


def replaced_hung_watch(proxy: ApiFaultProxy) -> bool:
    """A nodes watch was answered after the hung one began."""
    watches = proxy.records(r"^/api/v1/nodes$", watch=True)
    hung = [r.started for r in watches if r.action == "hang"]
    return bool(hung) and any(r.started > hung[0] and r.status == 200 for r in watches)


def report(name: str, figures: dict[str, Any]) -> None:
    """One line per scenario with its figures (run with -s to see them; docs/extender.md)."""
    print(f"\n[api-faults] {name}: {json.dumps(figures, sort_keys=True)}")


@pytest.fixture
def proxy(control_plane):
    proxy = control_plane.api_fault_proxy()
    yield proxy
    proxy.stop()


def test_gangs_bind_whole_through_throttling_delays_hangs_dropped_watches_and_410(
    kube_cluster, proxy: ApiFaultProxy
):
    scenario = kube_cluster("dgx-h100:8", serve=SERVE, api_url=proxy.url)
    core = client.CoreV1Api(scenario.api)
    probe = start_probe(scenario)
    time.sleep(2.0)  # a baseline for the probe before any fault
    faults_from = len(probe.seconds)

    # throttling and slowness on whatever the extender sends next (watches, lists, binds)
    proxy.inject(
        Fault("status", status=429, retry_after_s=1, times=3),
        Fault("delay", delay_s=2.0, times=6),
    )
    first = GangSpec("first", members=4, gpus=8)
    create_gang(scenario.api, first, scenario.namespace)

    # every watch cut; the pods watch is then told 410 (compaction, as an ERROR event), the
    # nodes watch 410 as a status, the re-list of pods hangs once and the next nodes watch too
    time.sleep(3.0)
    proxy.inject(
        Fault("gone_event", path=r"^/api/v1/pods$", watch=True, with_resource_version=True),
        Fault("status", path=r"^/api/v1/nodes$", watch=True, status=410),
        Fault("hang", path=r"^/api/v1/pods$", watch=False),
        Fault("hang", path=r"^/api/v1/nodes$", watch=True),
    )
    cut = proxy.drop_watches()
    dropped_at = time.monotonic()
    witness = unscheduled_pod("witness", scenario.namespace, gpus=0)
    core.create_namespaced_pod(scenario.namespace, witness)
    second = GangSpec("second", members=3, gpus=8)
    create_gang(scenario.api, second, scenario.namespace)

    wait_gang_bound(scenario.api, scenario.namespace, first, BIND_TIMEOUT_S)
    wait_gang_bound(scenario.api, scenario.namespace, second, BIND_TIMEOUT_S)
    # the hung nodes watch ends with its read timeout (watchTimeoutSeconds + 10 s)
    wait_for("the hung nodes watch to be replaced", lambda: replaced_hung_watch(proxy), 30)
    consistency = wait_consistent(scenario)
    probe.stop()

    pods = pods_of(scenario.api, scenario.namespace)
    assert_no_gpu_twice(pods)
    assert_on_plan([p for p in pods if p.metadata.name.startswith(("first", "second"))])
    state = extender_get(scenario, "/debug/state")
    watches = state["api"]["watches"]
    pods_watch = watches["pods"]
    assert cut >= 2, f"only {cut} watches were open to cut"
    assert pods_watch["gone"] >= 1, pods_watch  # 410 -> a re-list ...
    assert pods_watch["lists"] >= 1, pods_watch  # ... which hung once and was tried again:
    pod_lists = proxy.records(r"^/api/v1/pods$", watch=False)
    hung = [r.started for r in pod_lists if r.action == "hang"]
    assert hung and any(r.started > hung[0] and r.status == 200 for r in pod_lists)
    assert watches["nodes"]["gone"] >= 1, watches["nodes"]
    # the watch resumed: the witness pod, created after the cut, is known to the extender
    pod_records = proxy.records(r"^/api/v1/pods$")
    resumed = [r for r in pod_records if r.watch and r.started > dropped_at and r.status == 200]
    assert resumed, "no pods watch after the cut"
    assert consistency["ok"] and consistency["pods_known"] >= consistency["pods_listed"]
    assert not proxy.errors, proxy.errors
    throttled = [r for r in proxy.records() if r.action == "status" and r.status == 429]
    assert len(throttled) == 3  # (the apiserver may add 429s of its own at start-up)
    filters = probe.summary(faults_from)
    assert not probe.errors, probe.errors[:5]
    assert filters["p99_ms"] <= FILTER_P99_LIMIT_S * 1000, filters
    assert filters["max_ms"] < 2000, filters
    report(
        "watch faults",
        {
            "filter_probe_before_faults": probe.summary(0, faults_from),
            "filter_probe": filters,
            "pods_watch": pods_watch,
            "nodes_watch": watches["nodes"],
            "binds": state["api"]["binds"],
            "requests_through_proxy": len(proxy.records()),
            "pods_listed": consistency["pods_listed"],
        },
    )


def test_binds_whose_answer_is_lost_after_success_count_once(kube_cluster, proxy: ApiFaultProxy):
    scenario = kube_cluster("dgx-h100:8", serve=SERVE, api_url=proxy.url)
    probe = start_probe(scenario)
    proxy.inject(
        Fault("lost_answer", method="POST", path=BINDING, status=504, times=2),
        Fault("lost_answer", method="POST", path=BINDING, status=0, times=1),
        Fault("hang", method="POST", path=BINDING, times=1),
        Fault("status", method="POST", path=BINDING, status=429, retry_after_s=1, times=1),
    )
    gang = GangSpec("llm", members=6, gpus=8)
    create_gang(scenario.api, gang, scenario.namespace)
    placed = wait_gang_bound(scenario.api, scenario.namespace, gang, BIND_TIMEOUT_S)
    consistency = wait_consistent(scenario)
    probe.stop()

    assert len(set(placed.values())) == gang.members
    pods = pods_of(scenario.api, scenario.namespace, gang.name)
    assert_on_plan(pods)
    assert_no_gpu_twice(pods)
    binds = extender_get(scenario, "/debug/state")["api"]["binds"]
    assert binds["confirmed_after_error"] == 3, binds  # the two 504s and the cut connection
    assert binds["retries"] >= 2, binds  # the hung POST and the 429
    assert metric(scenario, "phalanx_binds_total") == gang.members
    assert metric(scenario, "phalanx_bind_failures_total") == 0
    posts = proxy.records(BINDING)
    assert len(posts) == gang.members + 2, [(r.action, r.status) for r in posts]
    filters = probe.summary()
    assert not probe.errors, probe.errors[:5]
    assert filters["p99_ms"] <= FILTER_P99_LIMIT_S * 1000, filters
    report(
        "lost bind answers",
        {
            "filter_probe": filters,
            "binds": binds,
            "binding_posts": len(posts),
            "pods_listed": consistency["pods_listed"],
        },
    )
