"""PodGroup status written back in each dialect's fields, and Events with the one vocabulary of
reason codes, from the planner's decisions (recorded, as the dry-run backend does)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from phalanx.extender.api_workers import ApiWorkers
from phalanx.extender.binding import RecordingBinder
from phalanx.extender.config import ServeConfig
from phalanx.extender.gang_events import (
    EventSeries,
    GangEvent,
    ObjectRef,
)
from phalanx.extender.gangs import native, scheduler_plugins, volcano
from phalanx.extender.group_status import MERGE_PATCH, STRATEGIC_MERGE_PATCH
from phalanx.extender.planner import Planner
from phalanx.extender.runtime import DryRunBackend, planner_factory
from phalanx.extender.status_reporter import GangReporter, RecordingSink
from phalanx.topology.presets import cluster_preset

from tests.fake_apiserver import kube_pod, phalanx_gang

NS = "ml"


class Rig:
    """A planner with a recording reporter, flushed by hand."""

    def __init__(self, preset: str = "dgx-h100:4") -> None:
        self.now = [1000.0]
        cluster = cluster_preset(preset)
        self.planner: Planner = planner_factory(ServeConfig(), clock=lambda: self.now[0])(cluster)
        self.nodes = list(self.planner.compiled.node_names)
        self.binder = RecordingBinder()
        self.sink = RecordingSink()
        self.reporter = GangReporter(self.sink, clock=lambda: self.now[0])
        self.reporter.stop()  # no thread: the test flushes
        self.reporter.attach(self.planner)

    def flush(self) -> None:
        self.reporter.flush()

    def filter(self, pod: dict[str, Any]) -> list[str]:
        return self.planner.filter(pod, self.nodes).passing

    def bind(self, pod: dict[str, Any]) -> None:
        (node,) = self.filter(pod)
        meta = pod["metadata"]
        assert self.planner.bind(NS, meta["name"], meta["uid"], node, self.binder) == ""

    def statuses(self, name: str) -> list[dict[str, Any]]:
        return [p.body["status"] for p in self.sink.patches if p.name == name]

    def events(self, name: str = "", reason: str = "") -> list[Any]:
        return [
            w
            for w in self.sink.events
            if (not name or w.event.regarding.name == name)
            and (not reason or w.event.reason == reason)
        ]


def group(kind: Any, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{kind.group}/{kind.version}",
        "kind": "PodGroup",
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "generation": 1},
        "spec": spec,
    }


def sp_pods(name: str, count: int, gpus: int = 8) -> list[dict[str, Any]]:
    labels = {"scheduling.x-k8s.io/pod-group": name}
    return [kube_pod(f"{name}-{i}", labels=labels, gpus=gpus) for i in range(count)]


def test_scheduler_plugins_group_goes_pending_scheduling_scheduled_running():
    rig = Rig()
    rig.planner.observe_group(
        scheduler_plugins.KIND, group(scheduler_plugins.KIND, "llm", {"minMember": 3})
    )
    pods = sp_pods("llm", 3)
    for pod in pods:
        pod["metadata"]["ownerReferences"] = [{"kind": "Job", "name": "llm-job", "uid": "j"}]
    for pod in pods[:2]:
        assert rig.filter(pod) == []
    rig.flush()
    (pending,) = rig.statuses("llm")
    assert pending == {
        "phase": "Pending",
        "scheduled": 0,
        "running": 0,
        "occupiedBy": "ml/llm-job",
    }
    (told,) = rig.events("llm")
    assert told.event.reason == "waiting_for_members" and told.event.type == "Normal"
    assert told.event.note == "gang ml/llm [waiting_for_members]: 2/3 members present"
    assert told.event.regarding.kind == "PodGroup" and told.event.regarding.uid == "uid-llm"
    # kube-scheduler retries: nothing new to say, nothing written
    for pod in pods[:2]:
        rig.filter(pod)
    rig.flush()
    assert len(rig.statuses("llm")) == 1 and len(rig.events("llm")) == 1
    for pod in pods:
        rig.filter(pod)
    rig.flush()
    scheduling = rig.statuses("llm")[-1]
    assert scheduling["phase"] == "Scheduling"
    assert scheduling["scheduleStartTime"] == "1970-01-01T00:16:40Z"
    (planned,) = rig.events("llm", "Planned")
    assert "planned 3 member(s) on" in planned.event.note
    for pod in pods:
        rig.bind(pod)
    rig.flush()
    assert rig.statuses("llm")[-1]["phase"] == "Scheduled"
    assert rig.statuses("llm")[-1]["scheduled"] == 3
    (bound,) = rig.events("llm", "Bound")
    assert bound.event.note == "gang ml/llm: 3/3 members bound"
    assert rig.sink.patches[-1].content_type == MERGE_PATCH
    for pod in pods:
        pod["spec"]["nodeName"] = rig.planner.pods[f"{NS}/{pod['metadata']['name']}"].node
        pod["status"]["phase"] = "Running"
        rig.planner.observe_pod(pod)
    rig.flush()
    assert rig.statuses("llm")[-1]["phase"] == "Running"
    assert rig.statuses("llm")[-1]["running"] == 3


def test_volcano_never_fits_is_pending_with_the_condition_and_one_warning():
    rig = Rig("dgx-h100:2")
    rig.planner.observe_group(volcano.KIND, group(volcano.KIND, "big", {"minMember": 3}))
    annotations = {"scheduling.k8s.io/group-name": "big"}
    pods = [kube_pod(f"big-{i}", annotations=annotations) for i in range(3)]
    for _ in range(3):
        for pod in pods:
            rig.filter(pod)
        rig.flush()
    (status,) = rig.statuses("big")
    assert status["phase"] == "Pending"
    (condition,) = status["conditions"]
    assert condition["type"] == "Unschedulable" and condition["status"] == "True"
    assert condition["reason"] == "never_fits"
    assert "[never_fits]" in condition["message"]
    (event,) = rig.events("big")
    assert event.event.reason == "never_fits" and event.event.type == "Warning"
    assert event.count == 1


def test_native_conditions_are_a_strategic_merge_by_type():
    rig = Rig()
    rig.planner.observe_group(
        native.KIND,
        group(native.KIND, "nat", {"schedulingPolicy": {"gang": {"minCount": 2}}}),
    )
    pods = [kube_pod(f"nat-{i}") for i in range(2)]
    for pod in pods:
        pod["spec"]["schedulingGroup"] = {"podGroupName": "nat"}
    rig.filter(pods[0])
    rig.flush()
    patch = rig.sink.patches[-1]
    assert patch.content_type == STRATEGIC_MERGE_PATCH
    conditions = {c["type"]: c for c in patch.body["status"]["conditions"]}
    assert conditions["phalanx.io/Waiting"]["status"] == "True"
    assert conditions["phalanx.io/Waiting"]["reason"] == "waiting_for_members"
    initially = conditions["PodGroupInitiallyScheduled"]
    assert initially["status"] == "False" and initially["reason"] == "Unschedulable"
    assert initially["observedGeneration"] == 1
    rig.filter(pods[1])
    for pod in pods:
        rig.bind(pod)
    rig.flush()
    conditions = {c["type"]: c for c in rig.sink.patches[-1].body["status"]["conditions"]}
    assert conditions["PodGroupInitiallyScheduled"]["status"] == "True"
    assert conditions["PodGroupInitiallyScheduled"]["reason"] == "Scheduled"
    assert conditions["phalanx.io/Waiting"] == {
        **conditions["phalanx.io/Waiting"],
        "status": "False",
        "reason": "Bound",
    }


@pytest.mark.parametrize("dialect", ["phalanx", "kueue"])
def test_gangs_without_a_group_object_get_their_events_on_the_pods(dialect):
    rig = Rig()
    if dialect == "phalanx":
        pods = [kube_pod(f"p-{i}", annotations=phalanx_gang("p", 3)) for i in range(3)]
    else:
        labels = {"kueue.x-k8s.io/pod-group-name": "p"}
        notes = {"kueue.x-k8s.io/pod-group-total-count": "3"}
        pods = [kube_pod(f"p-{i}", labels=labels, annotations=notes) for i in range(3)]
    rig.filter(pods[0])
    rig.flush()
    rig.filter(pods[1])
    rig.filter(pods[0])
    rig.flush()
    waiting = rig.events(reason="waiting_for_members")
    # each member is told once, when it first waits: no event per retry or per arrival
    assert [w.event.regarding.name for w in waiting] == ["p-0", "p-1"]
    assert all(w.event.regarding.kind == "Pod" for w in waiting)
    assert waiting[1].event.note == "gang ml/p [waiting_for_members]: 2/3 members present"
    assert not rig.sink.patches
    rig.filter(pods[2])
    for pod in pods:
        rig.bind(pod)
    rig.flush()
    assert sorted(w.event.regarding.name for w in rig.events(reason="Planned")) == [
        "p-0",
        "p-1",
        "p-2",
    ]
    bound = rig.events(reason="Bound")
    assert sorted(w.event.regarding.name for w in bound) == ["p-0", "p-1", "p-2"]
    assert all("GPUs 0,1,2,3,4,5,6,7" in w.event.note for w in bound)


def test_expiry_is_told_on_the_released_members():
    rig = Rig()
    pods = [kube_pod(f"e-{i}", annotations=phalanx_gang("e", 2)) for i in range(2)]
    for pod in pods:
        rig.filter(pod)
    rig.bind(pods[0])
    rig.now[0] += 10_000.0
    assert rig.planner.expire() == 1
    rig.flush()
    (expired,) = rig.events(reason="ReservationExpired")
    assert expired.event.regarding.name == "e-1" and expired.event.type == "Warning"


def test_repeats_fold_into_a_series_like_kube_schedulers_recorder():
    series = EventSeries(window_s=600.0, interval_s=30.0)
    event = GangEvent(ObjectRef("v1", "Pod", NS, "w-0", "u"), "Normal", "capacity", "n", "S")
    first = series.record(event, 0.0)
    assert first is not None and first.count == 1
    second = series.record(event, 1.0)
    assert second is not None and second.name == first.name and second.count == 2
    assert series.record(event, 2.0) is None and series.record(event, 3.0) is None
    assert series.due(10.0) == []
    (due,) = series.due(31.0)
    assert due.count == 4 and due.last_s == 3.0 and not series.waiting()
    other = GangEvent(event.regarding, "Normal", "capacity", "another note", "S")
    assert series.record(other, 32.0).name != first.name
    later = series.record(event, 700.0)
    assert later is not None and later.count == 1 and later.name != first.name


def test_the_count_of_series_with_unwritten_repeats_follows_the_series(
    monkeypatch: pytest.MonkeyPatch,
):
    """``waiting`` and ``due`` answer from a count kept as events come: checked against a
    pass over every series after each step, with series trimmed and windows passing."""
    import random

    from phalanx.extender import gang_events

    monkeypatch.setattr(gang_events, "KEPT", 5)
    rng = random.Random(5)
    series = EventSeries(window_s=50.0, interval_s=10.0)
    events = [
        GangEvent(ObjectRef("v1", "Pod", NS, f"w-{i}", "u"), "Normal", "capacity", "n", "S")
        for i in range(12)
    ]
    now = 0.0
    for _ in range(3000):
        now += rng.choice((0.1, 1.0, 5.0, 60.0))
        if rng.random() < 0.8:
            series.record(rng.choice(events), now)
        else:
            series.due(now)
        pending = sum(s.count > s.posted_count for s in series._seen.values())
        assert series._unposted == pending and series.waiting() == (pending > 0)


def test_workers_coalesce_by_key_and_never_post_one_key_twice_at_once():
    seen: list[int] = []
    busy = threading.Event()
    release = threading.Event()

    def handle(kind: str, arg: int) -> None:
        if arg == 0:
            busy.set()
            release.wait(5)
        seen.append(arg)

    workers = ApiWorkers("test", 4, handle)
    workers.submit("status", "g", 0)
    assert busy.wait(5)
    for value in range(1, 6):
        workers.submit("status", "g", value)  # the key is busy: the latest waits for it
    release.set()
    assert workers.wait_idle(5)
    assert seen == [0, 5]
    workers.stop()


def test_the_reporter_thread_writes_without_being_asked():
    sink = RecordingSink()
    planner = planner_factory(ServeConfig())(cluster_preset("dgx-h100:2"))
    GangReporter(sink, gather_s=0.0).attach(planner)
    planner.filter(kube_pod("x-0", annotations=phalanx_gang("x", 2)), ["h100-00000"])
    deadline = time.monotonic() + 5
    while not sink.events and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [w.event.reason for w in sink.events] == ["waiting_for_members"]


def test_dry_run_lists_what_it_would_write():
    planner = planner_factory(ServeConfig())(cluster_preset("dgx-h100:2"))
    backend = DryRunBackend(planner)
    planner.filter(kube_pod("y-0", annotations=phalanx_gang("y", 2)), ["h100-00000"])
    backend.reporter.flush()
    extra = backend.debug_extra()
    assert extra["events"][0]["reason"] == "waiting_for_members"
    assert extra["events"][0]["regarding"]["name"] == "y-0"
    assert extra["status_patches"] == []


def test_kube_backend_patches_group_status_and_creates_events():
    """Against the fake apiserver: the watch sees a Volcano gang wait for its third member and
    then bind whole; the group's status and the events follow, written by the workers."""
    from tests.fake_apiserver import FakeApiServer, wait_until
    from tests.test_extender_e2e import make_nodes, running

    api = FakeApiServer()
    make_nodes(api, 4)
    path = "/apis/scheduling.volcano.sh/v1beta1/podgroups"
    resource = "podgroups.scheduling.volcano.sh"
    with running(api) as c:
        api.add_group(path, group(volcano.KIND, "vg", {"minMember": 3}))
        annotations = {"scheduling.k8s.io/group-name": "vg"}
        for i in range(2):
            api.add_pod(kube_pod(f"vg-{i}", annotations=annotations))

        def status() -> dict[str, Any]:
            return (api.get(resource, "vg", NS) or {}).get("status") or {}

        def reasons() -> list[str]:
            return [e["reason"] for e in api.k8s_events.values()]

        wait_until(lambda: "waiting_for_members" in reasons(), what="the waiting event")
        wait_until(lambda: status().get("phase") == "Pending", what="the Pending phase")
        (condition,) = status()["conditions"]
        assert condition["reason"] == "waiting_for_members"
        event = next(e for e in api.k8s_events.values() if e["reason"] == "waiting_for_members")
        assert event["regarding"]["kind"] == "PodGroup" and event["regarding"]["name"] == "vg"
        assert event["reportingController"] == "phalanx.io/extender" and event["eventTime"]
        api.add_pod(kube_pod("vg-2", annotations=annotations))
        c.sync()
        attempts = c.schedule_all([f"vg-{i}" for i in range(3)])
        assert all(a.bound for a in attempts.values()), attempts
        wait_until(lambda: status().get("phase") == "Running", what="the Running phase")
        wait_until(lambda: "Bound" in reasons(), what="the Bound event")
        # the workers post one flush's events side by side, so Planned may land after Bound
        wait_until(lambda: "Planned" in reasons(), what="the Planned event")
        stats = c.backend.debug_extra()["api"]["status_and_events"]
        assert stats["status_failures"] == 0 and stats["event_failures"] == 0


def test_a_preempted_gang_is_told_once_on_its_pods_and_the_preemptor_is_preempting():
    from tests.test_extender_planner import member, planner

    p, names, _ = planner(nodes=2, preemption="priority")
    sink = RecordingSink()
    reporter = GangReporter(sink)
    reporter.stop()
    reporter.attach(p)
    binder = RecordingBinder()
    for i in range(2):
        p.observe_pod(member("low", i, 2))
    for i in range(2):
        node = p.filter(member("low", i, 2), names).passing[0]
        assert p.bind("ml", f"low-{i}", f"uid-ml-low-{i}", node, binder) == ""
    high = [member("high", i, 2) for i in range(2)]
    for pod in high:
        pod["spec"]["priority"] = 1000
        p.observe_pod(pod)
    p.filter(high[0], names)
    reporter.flush()
    p.filter(high[0], names)
    reporter.flush()
    preempted = [w for w in sink.events if w.event.reason == "preempted"]
    assert sorted(w.event.regarding.name for w in preempted) == ["low-0", "low-1"]
    assert all(w.event.type == "Warning" and w.count == 1 for w in preempted)
    assert "evicted to make room for gang ml/high" in preempted[0].event.note
    preempting = [w for w in sink.events if w.event.reason == "preempting"]
    assert sorted(w.event.regarding.name for w in preempting) == ["high-0", "high-1"]
    assert preempting[0].event.note.startswith("gang ml/high [preempting]: planned on ")
