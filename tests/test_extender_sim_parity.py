"""The simulator's scheduling path and the extender's planner make the same placements.

One scheduling core serves both (issue #12, defect 7): the same gang sequence of arrivals and
completions, fed to the simulator's cycle (``SchedulingCycle`` over a ``ClusterState`` with
the simulator's ``PlacementMemo``) and to a dry-run extender driven as kube-scheduler drives it
(filter every pending pod with every node offered, bind where it passes), must put every member
of every started gang on the same node.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phalanx.bench.topology_across_nodes import rail_fat_tree_cluster
from phalanx.extender.annotations import RUNTIME_ESTIMATE_SECONDS
from phalanx.extender.config import parse_config
from phalanx.extender.podspec import member_request
from phalanx.extender.runtime import DryRunBackend, planner_factory
from phalanx.policies.registry import get_permit, get_queue_policy
from phalanx.policies.scoring.inputs import build_scorer
from phalanx.scheduler.cycle import CycleConfig, SchedulingCycle
from phalanx.scheduler.gang import Gang, Member
from phalanx.scheduler.interfaces import RunningGang
from phalanx.scheduler.state import ClusterState
from phalanx.simulator.placement_memo import PlacementMemo
from phalanx.topology.model import Cluster
from phalanx.topology.presets import cluster_preset

from tests.fake_apiserver import kube_pod, phalanx_gang

START_S = 1_800_000_000.0

arrival = st.tuples(st.just("arrive"), st.integers(1, 3), st.sampled_from([1, 2, 4, 8]))
completion = st.tuples(st.just("complete"), st.integers(0, 20), st.just(0))
events = st.lists(st.one_of(arrival, arrival, completion), min_size=1, max_size=10)


class Clock:
    def __init__(self) -> None:
        self.now = START_S

    def __call__(self) -> float:
        return self.now


def pods_of(index: int, size: int, gpus: int, now: float, run_s: float = 0.0) -> list[dict]:
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    pods = []
    for i in range(size):
        annotations = phalanx_gang(f"g{index}", size)
        if run_s:
            annotations[RUNTIME_ESTIMATE_SECONDS] = str(run_s)
        pod = kube_pod(f"g{index}-{i}", gpus=gpus, annotations=annotations)
        pod["metadata"]["creationTimestamp"] = stamp
        pods.append(pod)
    return pods


class SimSide:
    """The simulator's scheduling path: one cycle per event over the waiting gangs."""

    def __init__(self, cluster: Cluster, permit: dict | None = None) -> None:
        compiled = cluster.compile()
        self.state = ClusterState(compiled)
        scorer = build_scorer("topology", {}, 0)
        memo = PlacementMemo(self.state, "fast", scorer)
        config = CycleConfig(
            solver="fast",
            scorer=scorer,
            permit=get_permit(permit["permit"], **permit["permitOptions"]) if permit else None,
        )
        self.cycle = SchedulingCycle.from_config(
            self.state, get_queue_policy("fifo"), config, place=memo.place
        )
        self.pending: dict[str, Gang] = {}
        self.running: dict[str, RunningGang] = {}
        self.placed: dict[str, dict[str, str]] = {}

    def arrive(self, gang: Gang) -> None:
        self.pending[gang.name] = gang

    def complete(self, name: str) -> None:
        self.running.pop(name)
        self.state.release(name)

    def schedule(self, now: float) -> None:
        outcome = self.cycle.run(list(self.pending.values()), list(self.running.values()), now)
        for gang, placement in outcome.started:
            del self.pending[gang.name]
            self.running[gang.name] = RunningGang(gang, placement, now, float("inf"))
            self.placed[gang.name] = {m.member: m.node for m in placement.members}


class ExtenderSide:
    """The dry-run extender, driven by filter and bind calls as kube-scheduler would."""

    def __init__(self, cluster: Cluster, clock: Clock, permit: dict | None = None) -> None:
        config = parse_config({"solver": "fast", "policies": permit or {}})
        self.backend = DryRunBackend(planner_factory(config, clock)(cluster))
        self.nodes = [n.name for n in cluster.nodes]
        self.pods: dict[str, list[dict]] = {}
        self.placed: dict[str, dict[str, str]] = {}

    def arrive(self, name: str, pods: list[dict]) -> None:
        self.pods[name] = pods
        for pod in pods:
            self.backend.planner.observe_pod(pod)

    def complete(self, name: str) -> None:
        for pod in self.pods.pop(name):
            done = {**pod, "status": {"phase": "Succeeded"}}
            done["spec"] = {**pod["spec"], "nodeName": self.placed[name][pod["metadata"]["name"]]}
            self.backend.planner.observe_pod(done)

    def schedule(self) -> None:
        planner = self.backend.planner
        for name, pods in self.pods.items():
            if name in self.placed:
                continue
            nodes: dict[str, str] = {}
            for pod in pods:
                decision = planner.filter(pod, self.nodes)
                if len(decision.passing) != 1:
                    break
                meta = pod["metadata"]
                node = decision.passing[0]
                error = planner.bind(
                    meta["namespace"], meta["name"], meta["uid"], node, self.backend.binder
                )
                assert error == "", error
                nodes[meta["name"]] = node
            if nodes:
                assert len(nodes) == len(pods), f"{name}: only {sorted(nodes)} placed"
                self.placed[name] = nodes


def replay(sim: SimSide, ext: ExtenderSide, clock: Clock, sequence: list, run_s: float) -> None:
    """Feeds both sides the same arrivals and completions, ten seconds apart, and checks
    after every event that they placed every member alike."""
    arrived = 0
    for step, (kind, a, b) in enumerate(sequence):
        clock.now = now = START_S + 10.0 * step
        if kind == "arrive":
            name = f"ml/g{arrived}"
            pods = pods_of(arrived, a, b, now, run_s)
            members = tuple(Member(p["metadata"]["name"], member_request(p)) for p in pods)
            estimate = run_s or None
            sim.arrive(Gang(name, members, submit_time_s=now, runtime_estimate_s=estimate))
            ext.arrive(name, pods)
            arrived += 1
        else:
            running = sorted(sim.running)
            if not running:
                continue
            name = running[a % len(running)]
            sim.complete(name)
            ext.complete(name)
        sim.schedule(now)
        ext.schedule()
        assert ext.placed == sim.placed
    ext.backend.planner.state.check_invariants()


def replayed(examples: int) -> settings:
    """Hypothesis settings of a parity test: fixed examples, no deadline (a replay plans
    every gang on both sides)."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )


@replayed(25)
@given(nodes=st.integers(1, 3), sequence=events)
def test_simulator_and_extender_place_alike(nodes: int, sequence: list) -> None:
    clock = Clock()
    cluster = cluster_preset(f"dgx-h100:{nodes}")
    replay(SimSide(cluster), ExtenderSide(cluster, clock), clock, sequence, 0.0)


HOLD = {"permit": "link-hold", "permitOptions": {"look_ahead": False}}
HOLD_RUN_S = 36_000.0
"""Every gang's declared run time: crossing the spine is worth a hold of over an hour."""
whole_nodes = st.tuples(st.just("arrive"), st.integers(1, 3), st.sampled_from([4, 8]))
hold_events = st.lists(st.one_of(whole_nodes, whole_nodes, completion), min_size=1, max_size=12)


@replayed(20)
@given(units=st.integers(2, 3), sequence=hold_events)
def test_simulator_and_extender_hold_alike(units: int, sequence: list) -> None:
    """With the link-hold permit on small scalable units (4 nodes, 2:1 spine), gangs that fit
    only across units are held on both sides alike and the rest placed alike."""
    clock = Clock()
    cluster = rail_fat_tree_cluster(4 * units, 4, 2.0)
    sim, ext = SimSide(cluster, HOLD), ExtenderSide(cluster, clock, HOLD)
    replay(sim, ext, clock, sequence, HOLD_RUN_S)
