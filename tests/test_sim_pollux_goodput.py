"""Pollux's goodput run-time model (:mod:`simulator.traces.pollux_goodput`).

A toy application written here is small enough that every run time below is worked out by
hand from the formulas of Pollux's simulator (adaptdl ``osdi21-artifact``,
``simulator/simulator.py`` ``Job.step`` / ``Job.update_local_bsz``, ``applications.py``).
Against the public artifact, a job that Pollux's Tiresias started at its first scheduling tick
must end exactly when the published results say.
"""

from __future__ import annotations

import gzip
import json
import math
import random
from collections import Counter
from pathlib import Path

import pytest
from phalanx.bench import pollux_tiresias
from phalanx.bench.shared_data import missing_reason, trace_path
from phalanx.policies.registry import get_scorer
from phalanx.scheduler.engine import place
from phalanx.scheduler.gang import Gang, Member, MemberRequest
from phalanx.scheduler.placement import CostBreakdown, MemberPlacement, Placement
from phalanx.scheduler.state import ClusterState
from phalanx.simulator.config import SimulationConfig
from phalanx.simulator.run import simulate
from phalanx.simulator.traces.openb import flat_cluster, pcie_node
from phalanx.simulator.traces.pollux import load_pollux
from phalanx.simulator.traces.pollux_goodput import (
    RESTART_DELAY_S,
    PolluxApplication,
    PolluxApplications,
    TunedJobRuntime,
)

# Two epochs (the shorter validation file); init batch 8 (smallest validated), max batch 16;
# local batch 4..8 (placements.csv).
TOY = {
    "placements.csv": (
        "placement,local_bsz,step_time,sync_time\n"
        "1,4,1.0,0.0\n1,8,2.0,0.0\n"
        "2,4,1.2,0.2\n2,8,2.0,0.2\n"
        "11,4,1.5,0.5\n11,8,2.4,0.4\n"
    ),
    "scalability.csv": "num_nodes,num_replicas,local_bsz,step_time,sync_time\n",
    "validation-8.csv": (
        "progress,iteration,metric,grad_sqr,grad_var\n100,100,0.5,1.0,1.0\n200,200,0.4,1.0,3.0\n"
    ),
    "validation-16.csv": (
        "progress,iteration,metric,grad_sqr,grad_var\n110,60,0.5,1.0,1.0\n210,120,0.4,3.0,1.0\n"
    ),
}


@pytest.fixture
def toy_root(tmp_path: Path) -> Path:
    folder = tmp_path / "app_profiles" / "toy"
    folder.mkdir(parents=True)
    for name, text in TOY.items():
        (folder / name).write_text(text)
    (tmp_path / "workload-1.csv").write_text(
        "name,time,application,num_replicas,batch_size\ntoy-0,0,toy,2,16\n"
    )
    return tmp_path


def test_two_replicas_progress_by_efficiency_weighted_epochs(toy_root: Path) -> None:
    job = TunedJobRuntime(PolluxApplication.load(toy_root / "app_profiles" / "toy"), 2, 16)
    # local 8 = max_local_bsz: no accumulation; batch 16, scale 16 / 8 = 2.
    assert job.split == (8, 0)
    # progress per epoch: min over the validation files, 100 then 200 - 100 = 100.
    # epoch 0 at batch 16: sqr 1, var 1: gain (1 + 1) / (1 / 2 + 1) = 4/3 -> 75 steps;
    # epoch 1: sqr 3, var 1: gain 4 / (1 / 2 + 3) = 8/7 -> 87.5 steps.
    assert job.epoch_steps().tolist() == pytest.approx([75.0, 87.5])
    # packed on one node ("2") at local 8: 2.0 s a step -> 150 + 175 s.
    assert job.packed == (2,)
    assert job.duration_s() == 325.0
    # spread one per node ("11"): 2.4 s a step -> 180 + 210 s, 1.2x the packed run time.
    assert job.duration_s((1, 1)) == 390.0
    assert job.stretch((1, 1)) == pytest.approx(1.2)


def test_single_replica_above_the_initial_batch_accumulates(toy_root: Path) -> None:
    app = PolluxApplication.load(toy_root / "app_profiles" / "toy")
    # batch 12 on one GPU: local 12 > 8 -> accum_steps 1, atomic 6 (and at least 1 step of
    # accumulation anyway, since 12 > the initial batch 8).
    job = TunedJobRuntime(app, 1, 12)
    assert job.split == (6, 1)
    # step at local 6 on "1": 1.5 s, sync 0 -> 1.5 + 1 x 1.5 = 3.0 s.
    assert job.step_time_s((1,)) == pytest.approx(3.0)
    # batch 12, halfway between 8 and 16: epoch 0 sqr 1, var 1; epoch 1 sqr 2, var 2;
    # scale 1.5: gain 2 / (1 / 1.5 + 1) = 1.2 and 4 / (2 / 1.5 + 2) = 1.2 -> 100 / 1.2 steps
    # each, 250 s each.
    assert job.duration_s() == 500.0
    # batch 8 (= the initial batch) on one GPU: no accumulation, gain 1 -> 100 steps x 2.0 s.
    plain = TunedJobRuntime(app, 1, 8)
    assert plain.split == (8, 0)
    assert plain.duration_s() == 400.0


def test_engine_runs_a_spread_job_at_its_placements_speed(toy_root: Path) -> None:
    workload = load_pollux(toy_root / "workload-1.csv", runtime="goodput")
    (job,) = workload.jobs
    assert (job.pods, job.duration_s) == (2, 325.0)
    # two 1-GPU nodes: the job must take (1, 1), 1.2x slower, after Pollux's 30 s restart.
    nodes = [pcie_node(f"n{i}", "T4", 1, 8000, 16384) for i in range(2)]
    result = simulate(
        workload, flat_cluster("two", nodes), SimulationConfig(restart_delay_s=RESTART_DELAY_S)
    )
    (run,) = result.runs
    assert run.gpus_per_node == (1, 1)
    assert run.end_s == pytest.approx(RESTART_DELAY_S + 390.0)


def test_iterations_stays_the_default_model(toy_root: Path) -> None:
    job = load_pollux(toy_root / "workload-1.csv").jobs[0]
    assert job.placement_stretch is None and job.pods is None
    with pytest.raises(ValueError, match="unknown run-time model"):
        load_pollux(toy_root / "workload-1.csv", runtime="epochs")  # type: ignore[arg-type]


PUBLISHED = ("published_results", "results-jobload", "tiresias-1.0", "summary.json.gz")
STARTED_AT_FIRST_TICK = {
    # workload, job: Pollux's published JCT equals (first 60 s tick - submission) + 30 s + the
    # model's run time, to the second, for one job of each application that never waited
    "workload-1": ("cifar10-0", "deepspeech2-1", "ncf-2", "bert-27", "yolov3-31"),
    "workload-3": ("yolov3-23", "yolov3-41"),
}
POLLUX_INTERVAL_S = 60


def test_run_times_match_pollux_published_tiresias_jcts() -> None:
    root = trace_path("pollux-adaptdl")
    reason = missing_reason(root / Path(*PUBLISHED))
    if reason:
        pytest.skip(reason)
    with gzip.open(root / Path(*PUBLISHED), "rt") as handle:
        published = json.load(handle)["jcts"]
    apps = PolluxApplications(root / "app_profiles")
    for workload, names in STARTED_AT_FIRST_TICK.items():
        rows = (root / "workloads" / f"{workload}.csv").read_text().splitlines()[1:]
        jobs = {row.split(",")[0]: row.split(",") for row in rows}
        for name in names:
            _, time_s, app, replicas, batch = jobs[name]
            model = TunedJobRuntime(apps.get(app), int(replicas), int(batch))
            submit_s = float(time_s)
            tick_s = math.ceil(submit_s / POLLUX_INTERVAL_S) * POLLUX_INTERVAL_S
            expected = tick_s - submit_s + RESTART_DELAY_S + model.duration_s()
            assert published[workload][name] == pytest.approx(expected, abs=1.0), name


def test_placement_beyond_the_table_interpolates_like_pollux() -> None:
    root = trace_path("pollux-adaptdl", "app_profiles", "imagenet")
    reason = missing_reason(root)
    if reason:
        pytest.skip(reason)
    pytest.importorskip("scipy", reason="Pollux's LinearNDInterpolator needs scipy")
    app = PolluxApplication.load(root)
    # 24 replicas packed on 6 nodes at local batch ceil(3200 / 24) = 134: a point on the line
    # between scalability.csv's (6, 24, 115) and (6, 24, 163) rows, so the interpolation over
    # (nodes, replicas, local batch) is the straight line between them.
    share = (134 - 115) / (163 - 115)
    step, sync = app.throughput((4,) * 6, 134)
    assert step == pytest.approx(
        0.6691271305084229 + share * (0.8616450548171997 - 0.6691271305084229)
    )
    assert sync == pytest.approx(
        0.06281620521545409 + share * (0.055516009140014644 - 0.06281620521545409)
    )


def _pollux_allocation(free: dict[int, int], replicas: int) -> Counter[int]:
    """Pollux's ``TiresiasPolicy.optimize``: the node with the most free GPUs (the first such
    on ties), as many replicas as it holds, then again."""
    left, taken = Counter(free), Counter()
    while sum(taken.values()) < replicas:
        node, count = left.most_common(1)[0]
        num = min(count, replicas - sum(taken.values()))
        taken[node] += num
        left[node] -= num
    return taken


@pytest.mark.parametrize("seed", range(6))
def test_spread_scorer_places_replicas_as_pollux_tiresias(seed: int) -> None:
    rng = random.Random(seed)
    compiled = pollux_tiresias.pollux_cluster().compile()
    state = ClusterState(compiled)
    gpus = int(compiled.gpu_count[0])
    used = {node: rng.choice([0, 1, 2, 3, 3, 4, 4]) for node in range(len(compiled.gpu_count))}
    for node, count in used.items():
        if count:
            members = tuple(
                MemberPlacement(f"busy{node}-{g}", f"pollux-{node:02d}", node, (g,), 1000)
                for g in range(count)
            )
            state.assign(Placement(f"busy{node}", members, "node", "", CostBreakdown()), 0.0)
    free = {node: gpus - count for node, count in used.items()}
    scorer = get_scorer(pollux_tiresias.POLLUX_SCORER)
    for replicas in (1, 3, 4, 6, 8, 12):
        if replicas > sum(free.values()):
            continue
        gang = Gang(
            name="job",
            members=tuple(Member(f"job-{i}", MemberRequest(gpus=1)) for i in range(replicas)),
        )
        placement = place(gang, state, scorer=scorer)
        assert isinstance(placement, Placement)
        got = Counter(m.node_index for m in placement.members)
        want = _pollux_allocation(free, replicas)
        # as many GPUs taken from nodes as free as Pollux's (nodes equally free are alike)
        assert sorted((free[n], got[n]) for n in got) == sorted((free[n], want[n]) for n in want)
