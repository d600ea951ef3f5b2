"""Golden runs on tiny traces whose every wait, JCT and allocation ratio is worked out by hand
in the comments."""

from __future__ import annotations

import math

import numpy as np
import pytest
from phalanx.simulator.config import SimulationConfig
from phalanx.simulator.engine import BIND_DELAY_STREAM
from phalanx.simulator.job import Job, TraceWorkload
from phalanx.simulator.metrics import summarize
from phalanx.simulator.records import JobStatus
from phalanx.simulator.run import simulate
from phalanx.simulator.slowdown import COMM_FRACTION_FULL_INTENSITY, SlowdownModel
from phalanx.simulator.traces.openb import flat_cluster, pcie_node

NODE_CPU_MILLI = 32_000
NODE_MEMORY_MIB = 128 * 1024


def cluster(nodes: int, gpus: int):
    return flat_cluster(
        "golden",
        [pcie_node(f"n{i}", "T4", gpus, NODE_CPU_MILLI, NODE_MEMORY_MIB) for i in range(nodes)],
    )


def workload(*jobs: Job) -> TraceWorkload:
    return TraceWorkload("golden", list(jobs), source="test")


def by_name(result):
    return {r.job.name: r for r in result.runs}


def four_jobs() -> TraceWorkload:
    return workload(
        Job("A", 0.0, 100.0, gpus=4),
        Job("B", 10.0, 50.0, gpus=4),
        Job("C", 20.0, 30.0, gpus=8),
        Job("D", 30.0, 10.0, gpus=2),
    )


def test_fifo_lets_small_gangs_pass_a_blocked_one():
    # 2 nodes x 4 GPUs. A takes a node at 0 (until 100), B the other at 10 (until 60).
    # C (8 GPUs = 2 pods of 4) needs both nodes: it waits until A ends at 100, runs to 130.
    # D (2 GPUs) arrives at 30 with nothing free; at 60 B ends, C still does not fit, and
    # best-effort FIFO lets D start at 60 (until 70).
    result = simulate(four_jobs(), cluster(2, 4), SimulationConfig(policy="fifo"))
    runs = by_name(result)
    assert {n: runs[n].first_start_s for n in "ABCD"} == {"A": 0, "B": 10, "C": 100, "D": 60}
    assert {n: runs[n].wait_s for n in "ABCD"} == {"A": 0, "B": 0, "C": 80, "D": 30}
    assert {n: runs[n].jct_s for n in "ABCD"} == {"A": 100, "B": 50, "C": 110, "D": 40}
    summary = summarize(result)
    assert summary["makespan_s"] == 130
    # Busy GPUs: 4 on [0,10), 8 on [10,60), 6 on [60,70), 4 on [70,100), 8 on [100,130]:
    # 40 + 400 + 60 + 120 + 240 = 860 GPU-s of 8 x 130 = 1040.
    assert summary["gpu_allocation_ratio"] == pytest.approx(860 / 1040)
    assert summary["gpu_utilisation"] == pytest.approx(860 / 1040)
    assert summary["jct_mean_s"] == pytest.approx((100 + 50 + 110 + 40) / 4)
    assert summary["queue_delay_mean_s"] == pytest.approx((0 + 0 + 80 + 30) / 4)
    assert summary["jobs_completed"] == summary["jobs_total"] == 4
    assert runs["C"].nodes == 2 and len(runs["C"].gang.members) == 2


def test_strict_fifo_keeps_the_order():
    # Same trace, strict FIFO: D may not pass C, so D starts when C ends at 130.
    config = SimulationConfig(policy="fifo", policy_options={"strict": True})
    runs = by_name(simulate(four_jobs(), cluster(2, 4), config))
    assert runs["D"].first_start_s == 130
    assert runs["D"].jct_s == 110
    assert runs["C"].first_start_s == 100


def test_gpu_shares_wait_for_room_on_the_gpu():
    # One node with one GPU. a takes 600 milli at 0 (until 10); b wants 500 milli at 1, which
    # no longer fits on the GPU: it waits until 10 and runs to 20.
    trace = workload(Job("a", 0.0, 10.0, gpu_milli=600), Job("b", 1.0, 10.0, gpu_milli=500))
    result = simulate(trace, cluster(1, 1), SimulationConfig())
    runs = by_name(result)
    assert runs["b"].first_start_s == 10 and runs["b"].wait_s == 9 and runs["b"].jct_s == 19
    # 600 milli on [0,10), 500 milli on [10,20]: 11,000 milli-s of 1,000 x 20.
    assert summarize(result)["gpu_allocation_ratio"] == pytest.approx(11_000 / 20_000)


def test_scheduling_interval_delays_starts_to_the_next_tick():
    # Interval 25 s: A arrives at 0 and starts at the tick at 0; B (10) waits for the tick at
    # 25; C (20, both nodes) can start only on the first tick after A (0-100) and B (25-75)
    # are done, at 100.
    config = SimulationConfig(scheduling_interval_s=25.0)
    runs = by_name(simulate(four_jobs(), cluster(2, 4), config))
    assert runs["A"].first_start_s == 0
    assert runs["B"].first_start_s == 25
    assert runs["D"].first_start_s == 75
    assert runs["C"].first_start_s == 100


def test_priority_preemption_restarts_the_victim():
    # One 4-GPU node. L (priority 0, 100 s) starts at 0; H (priority 10, 20 s) arrives at 10
    # and evicts L. H runs 10-30; L starts over at 30 and ends at 130.
    trace = workload(
        Job("L", 0.0, 100.0, gpus=4, priority=0),
        Job("H", 10.0, 20.0, gpus=4, priority=10),
    )
    config = SimulationConfig(
        policy="priority", preemption="priority", preemption_options={"min_runtime_s": 0.0}
    )
    result = simulate(trace, cluster(1, 4), config)
    runs = by_name(result)
    assert runs["H"].first_start_s == 10 and runs["H"].jct_s == 20
    assert runs["L"].preemptions == 1
    assert runs["L"].first_start_s == 0 and runs["L"].end_s == 130
    assert summarize(result)["preemptions"] == 1


def test_checkpointed_victim_resumes_where_it_stopped():
    # As above, but L keeps its 10 s of progress: it needs 90 s more from 30, ending at 120.
    trace = workload(
        Job("L", 0.0, 100.0, gpus=4, priority=0),
        Job("H", 10.0, 20.0, gpus=4, priority=10),
    )
    config = SimulationConfig(
        policy="priority",
        preemption="priority",
        preemption_options={"min_runtime_s": 0.0},
        resume_after_preemption=True,
    )
    runs = by_name(simulate(trace, cluster(1, 4), config))
    assert runs["L"].end_s == 120


def test_reservation_binds_after_the_delay():
    # Reserve with a 5 s TTL and bind 2 s later: the job holds its GPUs from 0 and runs
    # from 2 to 12.
    trace = workload(Job("x", 0.0, 10.0, gpus=2))
    config = SimulationConfig(reserve_ttl_s=5.0, bind_delay_s=2.0)
    runs = by_name(simulate(trace, cluster(1, 4), config))
    assert runs["x"].first_start_s == 2 and runs["x"].end_s == 12


def test_exponential_bind_delays_expire_late_reservations_and_requeue():
    # A 2-pod gang, each pod binding after an exponential delay of mean 10 s, TTL 5 s. The
    # gang binds when its later pod has; every draw of that at or past 5 s loses the
    # reservation, which is taken again at once (the cluster is otherwise empty). The draws
    # are the engine's stream, so the start time is the expiries' TTLs plus the first draw
    # under the TTL.
    trace = workload(Job("x", 0.0, 10.0, gpus=2, pods=2))
    seed, mean_s, ttl_s = 3, 10.0, 5.0
    config = SimulationConfig(
        seed=seed,
        reserve_ttl_s=ttl_s,
        bind_delay_s=mean_s,
        bind_delay_distribution="exponential",
        check_invariants=True,
    )
    result = simulate(trace, cluster(2, 4), config)
    draws = np.random.default_rng([seed, BIND_DELAY_STREAM])
    expiries = 0
    while (delay := float(draws.exponential(mean_s, size=2).max())) >= ttl_s:
        expiries += 1
    x = by_name(result)["x"]
    assert expiries > 0, "the seed should make at least one reservation expire"
    assert x.reservation_expiries == expiries
    assert x.first_start_s == pytest.approx(expiries * ttl_s + delay)
    assert x.end_s == pytest.approx(x.first_start_s + 10.0)
    assert summarize(result)["reservation_expiries"] == expiries


def test_a_gang_that_never_fits_is_rejected_with_a_reason():
    trace = workload(Job("big", 0.0, 10.0, gpus=16), Job("ok", 0.0, 10.0, gpus=1))
    result = simulate(trace, cluster(2, 4), SimulationConfig())
    runs = by_name(result)
    assert runs["big"].status is JobStatus.REJECTED
    assert "empty cluster" in runs["big"].reason
    assert runs["ok"].status is JobStatus.COMPLETED
    assert summarize(result)["jobs_rejected"] == 1


def test_fill_protocol_counts_what_arrived_and_what_fit():
    # Capacity 2 GPUs, one 1-GPU pod type, target 1.5x: the list (one pod) is topped up while
    # the total stays within 3 GPUs, so 3 pods arrive; 2 fit, the third is not retried.
    trace = workload(Job("p", 0.0, 1.0, gpus=1))
    result = simulate(trace, cluster(1, 2), SimulationConfig(policy="bestfit"), demand=1.5)
    summary = summarize(result)
    assert summary["jobs_total"] == 3
    assert summary["arrived_demand"] == pytest.approx(1.5)
    assert summary["gpu_allocation_ratio"] == 1.0
    assert summary["jobs_unplaced"] == 1
    assert summary["jobs_running"] == 2
    assert summary["makespan_s"] is None


def test_slowdown_stretches_a_spread_gang_by_the_link_ratio():
    # Two 4-GPU nodes, each 3/4 taken by a long job; a 2-pod x 1-GPU gang must then spread
    # over the two nodes. Its best placement (empty cluster) is inside one node, so its run
    # time is stretched by 1 + f * I * (inter-node cost / intra-node cost - 1).
    trace = workload(
        Job("f0", 0.0, 1000.0, gpus=3),
        Job("f1", 0.0, 1000.0, gpus=3),
        Job("g", 1.0, 100.0, gpus=2, pods=2, comm_intensity=1.0),
    )
    config = SimulationConfig(scorer="bestfit", slowdown=SlowdownModel(enabled=True))
    result = simulate(trace, cluster(2, 4), config)
    g = by_name(result)["g"]
    assert g.nodes == 2
    compiled = cluster(2, 4).compile()
    pairs = compiled.pair_cost_matrix(0)[:4, :4]
    best_pair = pairs[~np.eye(4, dtype=bool)].min()
    ratio = compiled.inter_node_cost(0, 1) / best_pair
    assert g.cost_ratio == pytest.approx(ratio)
    stretch = 1 + COMM_FRACTION_FULL_INTENSITY * (ratio - 1)
    assert g.stretch == pytest.approx(stretch)
    assert g.end_s == pytest.approx(1.0 + 100.0 * stretch)
    assert math.isclose(g.jct_s, 100.0 * stretch)


def test_strict_fifo_does_not_stall_behind_a_hopeless_head():
    # The head can never fit (16 GPUs on 8); it is rejected at its first failure and the cycle
    # runs again at once, so the job behind it starts at 0, not never.
    trace = workload(Job("huge", 0.0, 10.0, gpus=16), Job("small", 0.0, 10.0, gpus=1))
    config = SimulationConfig(policy="fifo", policy_options={"strict": True})
    runs = by_name(simulate(trace, cluster(2, 4), config))
    assert runs["huge"].status is JobStatus.REJECTED
    assert runs["small"].first_start_s == 0 and runs["small"].status is JobStatus.COMPLETED


def test_progress_counts_jobs_leaving_a_replay_and_arriving_under_fill():
    # Replay: a call per job that completes; the endless job arrives but never leaves. Fill:
    # one call per arriving pod.
    calls: list[tuple[int, int]] = []
    trace = workload(Job("a", 0.0, 10.0, gpus=1), Job("endless", 1.0, math.inf, gpus=1))
    simulate(trace, cluster(1, 4), SimulationConfig(), progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 2)]
    calls.clear()
    fill = workload(Job("p", 0.0, 1.0, gpus=1))
    result = simulate(
        fill,
        cluster(1, 2),
        SimulationConfig(policy="bestfit"),
        demand=1.5,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert len(calls) == len(result.runs) == 3
