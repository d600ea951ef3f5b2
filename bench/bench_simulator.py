"""Simulator benchmarks, each next to a baseline measured in the same run: the bare placement
loop (the same gangs placed in order by :func:`scheduler.engine.place` with the same scorer,
taken in a plain ledger; no cycle, events or metrics), so the gap is the simulator's overhead.

Default run (``--benchmark-disable``): small inputs, run once, asserting the outcome (every
job accounted for, the ledger consistent). Full sizes are ``benchmark_heavy``:
``python -m pytest bench/bench_simulator.py -m benchmark_heavy --benchmark-enable``; each times
the simulation and the bare loop in the same test and asserts their ratio, never an absolute
time (a loaded machine slows both): the whole Philly slice (74,167 jobs) within
``PHILLY_RATIO`` bare loops, one openb run to 130% arrived demand within ``OPENB_RATIO``. The
openb and Philly benchmarks need the public traces (:mod:`bench.shared_data`) and skip with the
reason when they are absent.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from functools import cache
from pathlib import Path

import pytest
from phalanx.bench.shared_data import missing_reason, trace_path
from phalanx.scheduler.engine import place
from phalanx.scheduler.interfaces import StateObserver
from phalanx.scheduler.placement import Placement
from phalanx.scheduler.state import ClusterState
from phalanx.simulator.clusters import resolve_cluster
from phalanx.simulator.config import SimulationConfig
from phalanx.simulator.data import SAMPLE_CLUSTER, SAMPLE_TRACE
from phalanx.simulator.engine import build_scorer
from phalanx.simulator.fill import FGD_DEMAND, fill_workload
from phalanx.simulator.gangs import GangFactory
from phalanx.simulator.job import TraceWorkload
from phalanx.simulator.metrics import summarize
from phalanx.simulator.run import simulate
from phalanx.simulator.slowdown import SlowdownModel
from phalanx.simulator.traces import load_trace
from phalanx.simulator.traces.openb import flat_cluster
from phalanx.topology.model import MILLI_PER_GPU, Cluster

OPENB_DIR = "alibaba-gpu-v2023-openb"
PHILLY_DIR = "philly"
PHILLY_RATIO = 4.0
"""Measured 1.8-2.4x on Philly prefixes (load average 2-3): the cycle, events and metrics."""
OPENB_RATIO = 2.5
"""Measured 1.1-1.5x for every scorer (the scorers dominate both)."""
QUICK_PHILLY_JOBS = 2_000
QUICK_OPENB_NODES = 150
FGD_POLICIES = ("random", "dotprod", "gpu-clustering", "gpu-packing", "bestfit", "fgd")


def shared_trace(name: str) -> Path:
    """The public trace ``name``, or a skip naming what is missing (not in a fresh clone)."""
    path = trace_path(name)
    reason = missing_reason(path)
    if reason:
        pytest.skip(reason)
    return path


@cache
def openb() -> TraceWorkload:
    return load_trace(f"openb:{shared_trace(OPENB_DIR)}")


@cache
def philly() -> TraceWorkload:
    return load_trace(f"philly:{shared_trace(PHILLY_DIR)}")


def small_openb_cluster() -> Cluster:
    full = openb().cluster
    assert full is not None
    return flat_cluster(
        "openb-150", [replace(n, domains={}) for n in full.nodes[:QUICK_OPENB_NODES]]
    )


def bare_place_loop(
    workload: TraceWorkload, cluster: Cluster, release: bool, scorer_name: str | None = None
) -> int:
    """Baseline: place each job's gang in order on a plain ledger with the same scorer
    (released at once when ``release``, as if every job were instant); returns how many were
    placed."""
    state = ClusterState(cluster.compile())
    factory = GangFactory(int(state.compiled.gpu_count.max()), SlowdownModel())
    gangs = [factory.gang(job) for job in workload.jobs]
    scorer = build_scorer(scorer_name, {}, 42, gangs) if scorer_name else None
    if isinstance(scorer, StateObserver):
        scorer.bind_state(state)
    placed = 0
    for i, gang in enumerate(gangs):
        result = place(gang, state, scorer=scorer)
        if isinstance(result, Placement):
            state.assign(result, float(i))
            placed += 1
            if release:
                state.release(gang.name)
    return placed


def capacity_milli(cluster: Cluster) -> int:
    return MILLI_PER_GPU * cluster.gpu_count


# ------------------------------------------------------------------ quick (default run)
def test_sample_replay(benchmark):
    benchmark.group = "bundled sample (300 jobs, 96 GPUs)"
    workload = load_trace(SAMPLE_TRACE)
    cluster = resolve_cluster(SAMPLE_CLUSTER)
    config = SimulationConfig(check_invariants=True)
    result = benchmark(simulate, workload, cluster, config)
    summary = summarize(result)
    assert summary["jobs_completed"] == summary["jobs_total"] == 300
    assert summary["queue_delay_mean_s"] > 0


def test_sample_baseline(benchmark):
    benchmark.group = "bundled sample (300 jobs, 96 GPUs)"
    workload = load_trace(SAMPLE_TRACE)
    assert benchmark(bare_place_loop, workload, resolve_cluster(SAMPLE_CLUSTER), True) == 300


@pytest.mark.parametrize("policy", ["bestfit", "fgd"])
def test_openb_fill_small(benchmark, policy):
    benchmark.group = f"openb fill to 130%, {QUICK_OPENB_NODES} nodes"
    cluster = small_openb_cluster()
    config = SimulationConfig(policy=policy, seed=42, check_invariants=True)
    result = benchmark(simulate, openb(), cluster, config, demand=FGD_DEMAND)
    summary = summarize(result)
    assert summary["arrived_demand"] == pytest.approx(FGD_DEMAND, abs=0.01)
    assert 0.8 < summary["gpu_allocation_ratio"] <= 1.0


def test_openb_fill_small_baseline(benchmark):
    benchmark.group = f"openb fill to 130%, {QUICK_OPENB_NODES} nodes"
    cluster = small_openb_cluster()
    pods = fill_workload(openb(), capacity_milli(cluster), FGD_DEMAND, seed=42)
    assert benchmark(bare_place_loop, pods, cluster, False, "bestfit") > 0


def test_philly_prefix(benchmark):
    benchmark.group = f"Philly, first {QUICK_PHILLY_JOBS} jobs"
    part = replace(philly(), jobs=philly().jobs[:QUICK_PHILLY_JOBS])
    assert part.cluster is not None
    result = benchmark(simulate, part, part.cluster, SimulationConfig())
    assert summarize(result)["jobs_completed"] == QUICK_PHILLY_JOBS


# ------------------------------------------------------------------ full size (heavy)
def wall_s(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


@pytest.mark.benchmark_heavy
def test_philly_full(benchmark):
    benchmark.group = "Philly, all 74,167 jobs"
    workload = philly()
    assert workload.cluster is not None
    result = benchmark.pedantic(
        simulate, (workload, workload.cluster, SimulationConfig()), rounds=1, iterations=1
    )
    assert summarize(result)["jobs_completed"] == len(workload.jobs)
    bare_s, placed = wall_s(bare_place_loop, workload, workload.cluster, True)
    assert placed == len(workload.jobs)
    assert benchmark.stats.stats.median <= PHILLY_RATIO * bare_s


@pytest.mark.benchmark_heavy
def test_philly_full_baseline(benchmark):
    benchmark.group = "Philly, all 74,167 jobs"
    workload = philly()
    assert workload.cluster is not None
    placed = benchmark.pedantic(
        bare_place_loop, (workload, workload.cluster, True), rounds=1, iterations=1
    )
    assert placed == len(workload.jobs)


@pytest.mark.benchmark_heavy
@pytest.mark.parametrize("policy", FGD_POLICIES)
def test_openb_full(benchmark, policy):
    benchmark.group = "openb default, fill to 130% (1,213 nodes)"
    workload = openb()
    assert workload.cluster is not None
    config = SimulationConfig(policy=policy, seed=42)
    result = benchmark.pedantic(
        simulate, (workload, workload.cluster, config), {"demand": FGD_DEMAND}, rounds=3
    )
    assert summarize(result)["gpu_allocation_ratio"] > 0.8
    pods = fill_workload(workload, capacity_milli(workload.cluster), FGD_DEMAND, seed=42)
    bare = [wall_s(bare_place_loop, pods, workload.cluster, False, policy)[0] for _ in range(3)]
    assert benchmark.stats.stats.median <= OPENB_RATIO * statistics.median(bare)


@pytest.mark.benchmark_heavy
@pytest.mark.parametrize("policy", FGD_POLICIES)
def test_openb_full_baseline(benchmark, policy):
    benchmark.group = "openb default, fill to 130% (1,213 nodes)"
    workload = openb()
    assert workload.cluster is not None
    pods = fill_workload(workload, capacity_milli(workload.cluster), FGD_DEMAND, seed=42)
    args = (pods, workload.cluster, False, policy)
    assert benchmark.pedantic(bare_place_loop, args, rounds=3) > 0
