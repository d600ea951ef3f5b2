"""The link-hold permit in the extender: ``policies.permit`` in the settings, every cycle of
the planner asks it, held members are rejected with the ``link_hold`` reason, completions
teach it run times, and no memo of a cycle outlives a hold.

The cluster is a rail-optimised fat tree of 8 DGX H100 nodes in two scalable units of 4
(``h100-0000``..``0003`` and ``0004``..``0007``) under a 2:1 spine. Eight one-node gangs fill
it; freeing two nodes in one unit, or one in each, sets up the two cases a 2 x 8-GPU gang
meets: room under one leaf, or room only across the spine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from phalanx.bench.topology_across_nodes import rail_fat_tree_cluster
from phalanx.extender.binding import RecordingBinder
from phalanx.extender.cli import command
from phalanx.extender.config import ConfigError, parse_config
from phalanx.extender.consistency import rebuild
from phalanx.extender.explain_view import explain
from phalanx.extender.gang_status import gang_status
from phalanx.extender.planner import Planner
from phalanx.extender.runtime import planner_factory
from phalanx.extender.status_reporter import GangReporter, RecordingSink
from phalanx.extender.warmup import warm_up
from phalanx.scheduler.interfaces import QueueContext
from phalanx.scheduler.reasons import Reason
from phalanx.topology.model import Cluster

from tests.kube_objects import kube_pod, phalanx_gang

T0 = 1767225600.0
"""The pods' creationTimestamp (2026-01-01T00:00:00Z): the gang is submitted at T0."""
RUN_S = 36_000
"""The held gang's run-time estimate (10 h): crossing the spine costs it hours."""
BLOCKER_S = 600
"""Blocker ``bI`` is estimated to run ``(I + 1) * BLOCKER_S``: the look-ahead expects the
first node of unit 0 besides node 0 to free at T0 + 1200 s, well inside the hold."""
NS = "ml"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def pod(gang: str, i: int, size: int, estimate_s: int, queue: str = "") -> dict[str, Any]:
    annotations = phalanx_gang(gang, size)
    annotations["phalanx.io/runtime-estimate-seconds"] = str(estimate_s)
    if queue:
        annotations["phalanx.io/queue"] = queue
    return kube_pod(f"{gang}-{i}", namespace=NS, annotations=annotations)


class Rig:
    """A planner built from settings as ``phalanx serve`` builds it, on a full cluster."""

    def __init__(self, policies: dict[str, Any], free: tuple[int, ...]) -> None:
        self.clock = Clock()
        self.cluster: Cluster = rail_fat_tree_cluster(8, 4, 2.0)
        config = parse_config({"policies": policies}, "serve.yaml")
        self.planner: Planner = planner_factory(config, self.clock)(self.cluster)
        self.names = [n.name for n in self.cluster.nodes]
        self.sink = RecordingSink()
        self.reporter = GangReporter(self.sink, clock=self.clock)
        self.reporter.stop()  # no thread: the test flushes
        self.reporter.attach(self.planner)
        self.blockers: dict[str, dict[str, Any]] = {}
        for i in range(len(self.names)):
            blocker = pod(f"b{i}", 0, 1, (i + 1) * BLOCKER_S)
            self.blockers[self.bind(blocker)] = blocker
        assert sorted(self.blockers) == self.names
        for i in free:
            meta = self.blockers.pop(self.names[i])["metadata"]
            self.planner.forget_pod(NS, meta["name"], meta["uid"])

    def filter(self, manifest: dict[str, Any]) -> Any:
        return self.planner.filter(manifest, self.names)

    def bind(self, manifest: dict[str, Any]) -> str:
        decision = self.filter(manifest)
        assert len(decision.passing) == 1, decision
        node = decision.passing[0]
        meta = manifest["metadata"]
        assert self.planner.bind(NS, meta["name"], meta["uid"], node, RecordingBinder()) == ""
        return node

    def finish(self, node: str) -> None:
        """The blocker on ``node`` succeeds."""
        done = self.blockers.pop(node)
        done["spec"]["nodeName"] = node
        done["status"] = {"phase": "Succeeded"}
        self.planner.observe_pod(done)

    def gang(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The 2 x 8-GPU gang ``g``, both members known before the first is filtered."""
        members = pod("g", 0, 2, RUN_S), pod("g", 1, 2, RUN_S)
        self.planner.observe_pod(members[1])
        return members

    def hold_ends_s(self) -> float:
        """When the plugin says the gang's hold ends."""
        planner = self.planner
        pending = planner.gangs[f"{NS}/g"].pending_object
        assert pending is not None
        ctx = QueueContext(now_s=self.clock.now, state=planner.state, running=[], pending=[pending])
        until = planner.permit.next_change_s(ctx)  # type: ignore[union-attr]
        assert until is not None
        return float(until)

    def units(self, nodes: list[str]) -> set[int]:
        return {self.names.index(n) // 4 for n in nodes}


def assert_held(rig: Rig, member: dict[str, Any]) -> str:
    decision = rig.filter(member)
    assert decision.passing == [] and not decision.unresolvable
    reasons = {decision.failed[n] for n in rig.names}  # every offered node, one reason
    assert len(reasons) == 1
    (reason,) = reasons
    assert reason.startswith(f"gang {NS}/g [{Reason.LINK_HOLD}]: held for faster links")
    assert f"{NS}/g" not in rig.planner.state.holdings
    return reason


def placed(rig: Rig, members: tuple[dict[str, Any], ...]) -> list[str]:
    nodes = []
    for member in members:
        decision = rig.filter(member)
        assert len(decision.passing) == 1, decision
        nodes.append(decision.passing[0])
    return nodes


def test_a_gang_with_a_unit_free_is_placed_at_once() -> None:
    rig = Rig({"permit": "link-hold"}, free=(2, 3))
    nodes = placed(rig, rig.gang())
    assert sorted(nodes) == ["h100-0002", "h100-0003"]
    assert (
        rig.planner.permit.next_change_s(  # type: ignore[union-attr]
            QueueContext(now_s=T0, state=rig.planner.state, running=[])
        )
        is None
    )


def test_without_the_permit_the_gang_crosses_units_at_once() -> None:
    rig = Rig({}, free=(0, 4))
    assert rig.planner.permit is None and rig.planner.cycle_config.permit is None
    nodes = placed(rig, rig.gang())
    assert sorted(nodes) == ["h100-0000", "h100-0004"] and rig.units(nodes) == {0, 1}


def test_a_gang_that_would_cross_units_is_held_until_a_unit_frees() -> None:
    rig = Rig({"permit": "link-hold"}, free=(0, 4))
    g0, g1 = rig.gang()
    reason = assert_held(rig, g0)
    assert "its links now cost 2.20x" in reason
    assert_held(rig, g1)
    # what users see: the gang's status, /debug/explain, and one Event per member
    status = gang_status(rig.planner, f"{NS}/g")
    assert status is not None and status.code == Reason.LINK_HOLD and status.message == reason
    doc = explain(rig.planner, gang=f"{NS}/g")
    assert "faster links" in doc["would_run_if"], doc
    rig.reporter.flush()
    events = [w.event for w in rig.sink.events if w.event.reason == Reason.LINK_HOLD]
    assert sorted(e.regarding.name for e in events) == ["g-0", "g-1"]
    assert all(e.type == "Normal" and e.note == reason for e in events)
    # ten minutes on, nothing freed: still held, the cycle asked again
    rig.clock.now = T0 + BLOCKER_S
    assert_held(rig, g0)
    # a node of unit 0 frees: the gang goes there, under one leaf
    rig.clock.now = T0 + 2 * BLOCKER_S
    rig.finish("h100-0001")
    nodes = placed(rig, (g0, g1))
    assert sorted(nodes) == ["h100-0000", "h100-0001"]
    assert rig.planner.permit.estimates.version == 1  # type: ignore[union-attr]


def test_the_hold_ends_on_time_and_no_cycle_memo_outlives_it() -> None:
    """Without the look-ahead nothing else ends the hold: the gang waits its loss out, then
    takes the slower placement. The memo of a cycle that left every gang waiting stands for
    up to a second; one made half a second before the hold ends must not answer a filter
    just after it (the gang would be told of a hold that is over)."""
    rig = Rig({"permit": "link-hold", "permitOptions": {"look_ahead": False}}, free=(0, 4))
    g0, g1 = rig.gang()
    assert_held(rig, g0)
    until = rig.hold_ends_s()
    assert T0 + 3_600 < until < T0 + RUN_S
    rig.clock.now = until - 0.5
    assert_held(rig, g0)
    hits = rig.planner._memo.hits
    assert_held(rig, g1)  # the same inputs within the second: answered from the memo
    assert rig.planner._memo.hits == hits + 1
    rig.clock.now = until + 0.1
    nodes = placed(rig, (g0, g1))
    assert rig.units(nodes) == {0, 1}
    status = gang_status(rig.planner, f"{NS}/g")
    assert status is not None and status.code == Reason.RESERVED


def test_the_members_are_sent_back_to_kube_scheduler_when_the_hold_ends() -> None:
    """kube-scheduler has no event for the end of a hold: the expiry timer's round at the
    hold's end writes the LinkHold condition into each unbound member's status (recorded
    here), which makes kube-scheduler try them again; nothing is written before."""
    rig = Rig({"permit": "link-hold", "permitOptions": {"look_ahead": False}}, free=(0, 4))
    g0, _ = rig.gang()
    assert_held(rig, g0)
    until = rig.hold_ends_s()
    assert rig.planner.next_wake_s() == pytest.approx(until)
    actions = rig.planner.actions
    rig.clock.now = until - 1.0
    rig.planner.expire()
    assert list(actions.requeues) == []  # type: ignore[attr-defined]
    rig.clock.now = until
    rig.planner.expire()
    requeued = sorted(key for key, _ in actions.requeues)  # type: ignore[attr-defined]
    assert requeued == [f"{NS}/g-0", f"{NS}/g-1"]
    assert all("link hold ended" in m for _, m in actions.requeues)  # type: ignore[attr-defined]
    assert rig.planner.next_wake_s() is None
    rig.planner.expire()
    assert len(actions.requeues) == 2  # type: ignore[attr-defined]


def test_a_gang_bound_before_its_hold_ends_is_not_sent_back() -> None:
    rig = Rig({"permit": "link-hold"}, free=(0, 4))
    g0, g1 = rig.gang()
    assert_held(rig, g0)
    until = rig.hold_ends_s()
    rig.finish("h100-0001")
    for member, node in zip((g0, g1), placed(rig, (g0, g1)), strict=True):
        meta = member["metadata"]
        assert rig.planner.bind(NS, meta["name"], meta["uid"], node, RecordingBinder()) == ""
    rig.clock.now = until
    rig.planner.expire()
    assert list(rig.planner.actions.requeues) == []  # type: ignore[attr-defined]


def test_completions_teach_the_queue_policy_and_the_permit_under_the_gangs_queue() -> None:
    rig = Rig({"queue": "sjf", "permit": "link-hold"}, free=(2, 3))
    g0, g1 = pod("g", 0, 2, RUN_S, queue="a"), pod("g", 1, 2, RUN_S, queue="a")
    rig.planner.observe_pod(g1)
    for member in (g0, g1):
        rig.bind(member)
    rig.clock.now = T0 + 4_000
    for member in (g0, g1):
        member["status"] = {"phase": "Succeeded"}
        rig.planner.observe_pod(member)
    learned = (rig.planner.queue.estimator, rig.planner.permit.estimates)  # type: ignore[union-attr]
    for estimator in learned:
        assert estimator.version == 1
        assert estimator.history_estimate_s("a", "") == pytest.approx(4_000)


def test_a_rebuilt_planner_keeps_the_permit_and_warm_up_teaches_it_nothing() -> None:
    rig = Rig({"queue": "sjf", "permit": "link-hold"}, free=())
    fresh = rebuild(rig.planner)
    assert fresh.permit is rig.planner.permit
    assert fresh.cycle_config.permit is rig.planner.permit
    config = parse_config({"policies": {"queue": "sjf", "permit": "link-hold"}})
    made: list[Planner] = []
    factory = planner_factory(config)

    def make(cluster: Cluster) -> Planner:
        made.append(factory(cluster))
        return made[-1]

    warm_up(make)
    assert made[0].permit.estimates.version == 0  # type: ignore[union-attr]
    assert made[0].queue.estimator.version == 0  # type: ignore[attr-defined]


def test_settings_name_a_bad_permit_in_one_line(tmp_path: Any) -> None:
    cfg = parse_config({"policies": {"permit": "link-hold", "permitOptions": {"share": 0.5}}})
    assert cfg.policies.permit == "link-hold" and cfg.policies.permit_options == {"share": 0.5}
    assert parse_config({}).policies.permit is None
    bad_names = {
        ("nosuch", ()): "unknown permit policy 'nosuch'; known: link-hold",
        ("link-hold", ("nope",)): "permit policy 'link-hold' takes no option 'nope'",
    }
    for (name, options), message in bad_names.items():
        with pytest.raises(ConfigError) as err:
            policies = {"permit": name, "permitOptions": dict.fromkeys(options, 1)}
            parse_config({"policies": policies}, "serve.yaml")
        (problem,) = err.value.problems
        assert problem.startswith(f"serve.yaml: policies.permit: {message}")
    with pytest.raises(ConfigError) as err:
        parse_config({"policies": {"permit": "link-hold", "permitOptions": {"share": -1}}}, "s")
    assert err.value.problems == [
        "s: policies.permit: permit 'link-hold': share must be a number >= 0, got -1"
    ]
    with pytest.raises(ConfigError) as err:
        parse_config({"policies": {"permitOptions": {"share": 1}}}, "s")
    assert err.value.problems == ["s: policies.permitOptions: given without policies.permit"]
    bad = tmp_path / "serve.yaml"
    bad.write_text("policies: {permit: link-hold, permitOptions: {look_ahead: maybe}}\n")
    result = CliRunner().invoke(
        command, ["--config", str(bad), "--cluster", "dgx-h100:2", "--dry-run"]
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "policies.permit: permit policy 'link-hold': option 'look_ahead' must be" in (
        result.output
    )


def test_the_chart_leaves_the_permit_off_and_passes_it_through() -> None:
    pytest.importorskip("helm_python")
    from phalanx.extender.chart import render_chart, rendered_objects

    chart = Path(__file__).resolve().parent.parent / "deploy" / "helm" / "phalanx"

    def serve_policies(values: dict[str, Any] | None) -> Any:
        for obj in rendered_objects(render_chart(chart, values)):
            if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == "phalanx-extender":
                return parse_config(yaml.safe_load(obj["data"]["serve.yaml"])).policies
        raise AssertionError("no serve.yaml in the rendering")

    assert serve_policies(None).permit is None
    on = {"config": {"policies": {"permit": "link-hold", "permitOptions": {"share": 0.5}}}}
    policies = serve_policies(on)
    assert policies.permit == "link-hold" and policies.permit_options == {"share": 0.5}
    assert policies.queue == "fifo"  # the chart's other policies are kept


def test_level_costs_in_the_settings_name_bad_entries_in_one_line() -> None:
    assert parse_config({"kube": {"levelCosts": {"spine": 22}}}).kube.level_costs == {"spine": 22.0}
    with pytest.raises(ConfigError) as err:
        parse_config({"kube": {"levelCosts": {"spne": 22, "su": -1, "rack": True}}}, "s")
    problems = err.value.problems
    assert problems[0].startswith("s: kube.levelCosts.spne: unknown level; known: ")
    assert problems[1:] == [
        "s: kube.levelCosts.su: expected a non-negative number, got -1",
        "s: kube.levelCosts.rack: expected a non-negative number, got True",
    ]


def test_completions_teach_estimates_by_job_class_as_the_simulator_does() -> None:
    """``phalanx.io/job-class`` reaches the gang, so a finished gang teaches its class's
    history in its queue (the simulator's estimates read a class before its queue): two
    classes of one queue that ran 4,000 s and 1,000 s are estimated apart."""
    rig = Rig({"queue": "sjf"}, free=(2, 3))
    for gang, job_class, ran_s in (("g", "bert", 4_000), ("h", "resnet", 1_000)):
        members = []
        for i in range(2):
            member = pod(gang, i, 2, RUN_S, queue="a")
            member["metadata"]["annotations"]["phalanx.io/job-class"] = job_class
            members.append(member)
        rig.planner.observe_pod(members[1])
        for member in members:
            rig.bind(member)
        assert rig.planner.gangs[f"{NS}/{gang}"].hints.job_class == job_class  # type: ignore[union-attr]
        rig.clock.now += ran_s
        for member in members:
            member["status"] = {"phase": "Succeeded"}
            rig.planner.observe_pod(member)
    estimator = rig.planner.queue.estimator  # type: ignore[attr-defined]
    assert estimator.history_estimate_s("a", "bert") == pytest.approx(4_000)
    assert estimator.history_estimate_s("a", "resnet") == pytest.approx(1_000)
