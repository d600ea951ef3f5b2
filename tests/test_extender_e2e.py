"""End to end: the extender against the in-process apiserver, driven by a fake kube-scheduler
that sends filter -> prioritize -> bind for every member in kube-scheduler's exact JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from kubernetes import client
from phalanx.extender import annotations as keys
from phalanx.extender.app import AppOptions, ExtenderApp
from phalanx.extender.config import KubeConfig, ServeConfig
from phalanx.extender.kube_backend import KubeBackend
from phalanx.extender.runtime import planner_factory

from tests.fake_apiserver import (
    FakeApiServer,
    FakeKubeScheduler,
    kube_node,
    kube_pod,
    phalanx_gang,
    serve_app,
    wait_until,
)

SU_NODES = 4


@dataclass
class Cluster:
    api: FakeApiServer
    backend: KubeBackend
    scheduler: FakeKubeScheduler

    def schedule_all(self, pods: list[str], namespace: str = "ml") -> dict[str, object]:
        return self.scheduler.schedule_all(namespace, pods)

    def sync(self) -> None:
        """Wait until the extender's cache has every pod the apiserver has."""
        planner = self.backend.planner
        wait_until(lambda: self._synced(planner), what="pod cache to catch up")

    def _synced(self, planner) -> bool:
        with self.api.cond:
            pods = {
                f"{ns}/{name}": (p.get("spec") or {}).get("nodeName") or ""
                for (ns, name), p in self.api.objects.get("pods", {}).items()
                if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            }
        with planner.lock:
            mine = {k: r.node for k, r in planner.pods.items()}
        return mine == pods


def make_nodes(api: FakeApiServer, n: int) -> None:
    for i in range(n):
        api.add_node(kube_node(f"gpu-{i:02d}", su=f"su{i // SU_NODES}"))


@contextmanager
def running(api: FakeApiServer, barrier_s: float = 8.0, **settings: object) -> Iterator[Cluster]:
    config = ServeConfig(**settings)  # type: ignore[arg-type]
    with api.serve() as apiserver_url:
        api_client = client.ApiClient(client.Configuration(host=apiserver_url))
        kube = KubeConfig(topology_labels="phalanx", watch_timeout_s=5, topology_refresh_s=0.05)
        backend = KubeBackend(api_client, kube, planner_factory(config))
        backend.start()
        wait_until(lambda: backend.ready()[0], what="initial sync")
        app = ExtenderApp(backend, AppOptions(bind_barrier_s=barrier_s))
        with serve_app(app) as url:
            scheduler = FakeKubeScheduler(api, url)
            try:
                yield Cluster(api, backend, scheduler)
            finally:
                scheduler.close()
                backend.stop()


def gang_pods(api: FakeApiServer, gang: str, size: int, gpus: int = 8) -> list[str]:
    names = [f"{gang}-{i}" for i in range(size)]
    for name in names:
        api.add_pod(kube_pod(name, gpus=gpus, annotations=phalanx_gang(gang, size)))
    return names


def test_gangs_bind_whole_with_annotations():
    api = FakeApiServer()
    make_nodes(api, 8)
    with running(api) as c:
        a = gang_pods(api, "a", 4)
        b = gang_pods(api, "b", 2)
        c.sync()
        attempts = c.schedule_all(a + b)
        assert all(att.bound for att in attempts.values()), attempts
        nodes_a = {attempts[p].node for p in a}
        assert len(nodes_a) == 4, "8-GPU members of a 4-member gang need 4 nodes"
        pod = api.pod("ml", "a-2")
        ann = pod["metadata"]["annotations"]
        assert ann[keys.GPU_IDS] == "0,1,2,3,4,5,6,7"
        assert ann[keys.GANG_KEY] == "ml/a"
        assert ann[keys.RANK] == "2"
        assert ann[keys.GANG_NODES].split(",")[2] == pod["spec"]["nodeName"]
        assert json.loads(ann[keys.GANG_PLAN])["key"] == "ml/a"
        assert {"type": "PodScheduled", "status": "True"} in pod["status"]["conditions"]
        c.sync()
        state = c.backend.planner.snapshot()
        assert {g["key"]: g["phase"] for g in state["gangs"]} == {"ml/a": "bound", "ml/b": "bound"}
        c.backend.planner.state.check_invariants()


def test_interleaved_gangs_do_not_deadlock():
    """Two 2-node gangs on 2 nodes, members arriving interleaved: a naive extender gives one
    node to each gang and neither completes; Phalanx plans the first gang whole."""
    api = FakeApiServer()
    make_nodes(api, 2)
    with running(api) as c:
        gang_pods(api, "x", 2)
        gang_pods(api, "y", 2)
        c.sync()
        first = c.schedule_all(["x-0", "y-0", "x-1", "y-1"])
        assert first["x-0"].bound and first["x-1"].bound
        assert not first["y-0"].bound and not first["y-1"].bound
        reasons = set(first["y-0"].reasons.values())
        assert reasons and all(r.startswith("gang ml/y") for r in reasons), reasons
        for name in ("x-0", "x-1"):
            api.set_pod_phase("ml", name, "Succeeded")
        c.sync()
        again = c.schedule_all(["y-1", "y-0"])
        assert all(a.bound for a in again.values()), again


def test_gang_that_does_not_fit_binds_nothing_and_says_why():
    api = FakeApiServer()
    make_nodes(api, 3)
    with running(api) as c:
        big = gang_pods(api, "big", 4)
        c.sync()
        attempts = c.schedule_all(big)
        assert not any(a.bound for a in attempts.values())
        reasons = set(attempts["big-0"].reasons.values())
        assert reasons and all("ml/big" in r for r in reasons), reasons
        assert api.bindings == []
        assert c.backend.planner.state.holdings == {}


def test_quorum_gate_waits_for_members():
    api = FakeApiServer()
    make_nodes(api, 4)
    with running(api) as c:
        api.add_pod(kube_pod("q-0", annotations=phalanx_gang("q", 3)))
        c.sync()
        attempt = c.scheduler.schedule("ml", "q-0")
        assert not attempt.bound
        assert set(attempt.reasons.values()) == {
            "gang ml/q [waiting_for_members]: 1/3 members present"
        }
        for i in (1, 2):
            api.add_pod(kube_pod(f"q-{i}", annotations=phalanx_gang("q", 3)))
        c.sync()
        assert all(a.bound for a in c.schedule_all(["q-0", "q-1", "q-2"]).values())


def test_scheduler_plugins_podgroup_and_kueue_group():
    api = FakeApiServer()
    make_nodes(api, 4)
    with running(api) as c:
        api.add_group(
            "/apis/scheduling.x-k8s.io/v1alpha1/podgroups",
            {"metadata": {"name": "pg", "namespace": "ml"}, "spec": {"minMember": 2}},
        )
        for i in range(2):
            api.add_pod(kube_pod(f"pg-{i}", labels={"scheduling.x-k8s.io/pod-group": "pg"}))
            api.add_pod(
                kube_pod(
                    f"kq-{i}",
                    gpus=4,
                    labels={"kueue.x-k8s.io/pod-group-name": "kq"},
                    annotations={"kueue.x-k8s.io/pod-group-total-count": "2"},
                )
            )
        c.sync()
        wait_until(lambda: ("scheduler-plugins", "ml", "pg") in c.backend.planner.groups)
        attempts = c.schedule_all(["pg-0", "pg-1", "kq-0", "kq-1"])
        assert all(a.bound for a in attempts.values()), attempts
        assert api.pod("ml", "kq-1")["metadata"]["annotations"][keys.GANG_KEY] == "ml/kq"


def test_node_failure_replans_reserved_member():
    api = FakeApiServer()
    make_nodes(api, 4)
    with running(api) as c:
        gang_pods(api, "f", 2)
        c.sync()
        first = c.scheduler.schedule("ml", "f-0", wait=False)  # waits at the bind barrier
        planner = c.backend.planner
        reserved = next(
            m.node for m in planner.state.holdings["ml/f"].placement.members if m.member == "f-1"
        )
        wait_until(lambda: "f-0" in planner.gangs["ml/f"].arrived, what="f-0 at the barrier")
        node = api.get("nodes", reserved)
        node["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
        api._put("nodes", node, "MODIFIED")
        second = c.scheduler.schedule("ml", "f-1")
        assert second.bound and second.node != reserved
        assert first.bound and first.node != second.node, "f-0 kept its place"
        assert planner.stats.replans == 1
        c.sync()
        planner.state.check_invariants()


def test_deleted_node_drops_its_reservations():
    api = FakeApiServer()
    make_nodes(api, 4)
    with running(api) as c:
        gang_pods(api, "d", 2)
        c.sync()
        first = c.scheduler.schedule("ml", "d-0", wait=False)  # waits at the bind barrier
        planner = c.backend.planner
        reserved = next(
            m.node for m in planner.state.holdings["ml/d"].placement.members if m.member == "d-1"
        )
        api.delete_node(reserved)
        wait_until(lambda: reserved not in planner.compiled.node_index, what="topology refresh")
        attempt = c.scheduler.schedule("ml", "d-1")
        assert attempt.bound and attempt.node != reserved and first.bound
        planner.state.check_invariants()


def test_restart_mid_gang_neither_double_allocates_nor_strands():
    """A partly bound gang (the bind barrier prevents one, but a bind that fails after it
    released still makes one; the barrier is off here to make one directly)."""
    api = FakeApiServer()
    make_nodes(api, 4)
    with running(api, barrier_s=0) as c:
        pods = gang_pods(api, "r", 3)
        c.sync()
        for name in pods[:2]:
            assert c.scheduler.schedule("ml", name).bound
        plan = {
            m.member: m.node for m in c.backend.planner.state.holdings["ml/r"].placement.members
        }
        api.add_pod(kube_pod("other-0", gpus=8))
    # a new extender process: everything it knows comes from the cluster
    with running(api) as c:
        c.sync()
        planner = c.backend.planner
        holding = planner.state.holdings["ml/r"]
        assert holding.bound_members == {"r-0", "r-1"}
        assert {m.member: m.node for m in holding.placement.members} == plan
        other = c.scheduler.schedule("ml", "other-0")
        assert other.bound and other.node != plan["r-2"], "the unbound rank stays reserved"
        last = c.scheduler.schedule("ml", "r-2")
        assert last.bound and last.node == plan["r-2"]
        c.sync()
        planner.state.check_invariants()
        used = planner.compiled.gpu_used_milli.sum() // 1000
        assert used == 4 * 8


def test_repeat_bind_is_idempotent_and_failures_keep_the_plan():
    api = FakeApiServer()
    make_nodes(api, 2)
    with running(api, barrier_s=0) as c:  # binds of one member, posted by hand
        gang_pods(api, "i", 2)
        c.sync()
        pod = api.pod("ml", "i-0")
        node = c.scheduler.post("filter", {"Pod": pod, "NodeNames": ["gpu-00", "gpu-01"]})[
            "NodeNames"
        ][0]
        args = {"PodName": "i-0", "PodNamespace": "ml", "PodUID": pod["metadata"]["uid"]}
        c.backend.binder.timeout_s = 0.5  # a 500 is retried with backoff for this long
        api.fail_bindings = 1_000
        failed = c.scheduler.post("bind", {**args, "Node": node})
        assert "injected failure" in failed["Error"]
        assert "gave up after" in failed["Error"]
        assert "ml/i" in c.backend.planner.state.holdings, "a failed bind releases nothing"
        api.fail_bindings = 0
        assert c.scheduler.post("bind", {**args, "Node": node}) == {"Error": ""}
        assert c.scheduler.post("bind", {**args, "Node": node}) == {"Error": ""}
        wrong_uid = c.scheduler.post("bind", {**args, "PodUID": "nope", "Node": node})
        assert "does not match" in wrong_uid["Error"]


@pytest.mark.parametrize("kind", ["deleted", "finished"])
def test_finished_or_deleted_gang_frees_everything(kind: str):
    api = FakeApiServer()
    make_nodes(api, 2)
    with running(api) as c:
        pods = gang_pods(api, "g", 2)
        c.sync()
        assert all(a.bound for a in c.schedule_all(pods).values())
        for name in pods:
            if kind == "deleted":
                api.delete_pod("ml", name)
            else:
                api.set_pod_phase("ml", name, "Succeeded")
        planner = c.backend.planner
        wait_until(lambda: not planner.state.holdings, what="release")
        assert int(planner.compiled.free_gpu_count.sum()) == 16
