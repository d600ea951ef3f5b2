"""The simulator's per-job wait reasons (the codes of ``scheduler.reasons``): booked per spell
in the queue on tiny traces worked out by hand, written to ``jobs.csv``, and summed per queue
in ``summary.json`` and ``report.md``."""

from __future__ import annotations

import csv
import json
import math

import pytest
from phalanx.scheduler.gang import Gang
from phalanx.scheduler.reasons import Reason
from phalanx.simulator import wait_reasons
from phalanx.simulator.config import SimulationConfig
from phalanx.simulator.data import SAMPLE_CLUSTER, SAMPLE_TRACE
from phalanx.simulator.job import Job, TraceWorkload
from phalanx.simulator.metrics import summarize
from phalanx.simulator.records import JobRun, JobStatus
from phalanx.simulator.report import JOB_COLUMNS, write_outputs
from phalanx.simulator.run import RunSpec, run_spec, simulate
from phalanx.simulator.sweep import run_summary
from phalanx.simulator.traces.openb import flat_cluster, pcie_node


def cluster(nodes: int, gpus: int):
    return flat_cluster(
        "waits", [pcie_node(f"n{i}", "T4", gpus, 32_000, 128 * 1024) for i in range(nodes)]
    )


def four_jobs(tenants: tuple[str, ...] = ("t",) * 4) -> TraceWorkload:
    """2 nodes x 4 GPUs: A (4 GPUs, 0-100), B (4, from 10 for 50), C (8 = both nodes, at 20),
    D (2, at 30): the trace of ``test_sim_golden``."""
    return TraceWorkload(
        "waits",
        [
            Job("A", 0.0, 100.0, gpus=4, tenant=tenants[0]),
            Job("B", 10.0, 50.0, gpus=4, tenant=tenants[1]),
            Job("C", 20.0, 30.0, gpus=8, tenant=tenants[2]),
            Job("D", 30.0, 10.0, gpus=2, tenant=tenants[3]),
        ],
        source="test",
    )


def by_name(result):
    return {r.job.name: r for r in result.runs}


def test_fifo_books_capacity_waits():
    # C waits 20-100 (A and B hold both nodes until 60, A one of them until 100); D waits
    # 30-60 with no GPU free, then passes C (best-effort FIFO). Every wait is "capacity".
    runs = by_name(simulate(four_jobs(), cluster(2, 4), SimulationConfig(policy="fifo")))
    assert runs["C"].wait_s_by_code == {Reason.CAPACITY: 80.0}
    assert runs["D"].wait_s_by_code == {Reason.CAPACITY: 30.0}
    assert runs["A"].wait_s_by_code is None and wait_reasons.main_reason(runs["A"]) == ""
    for run in runs.values():
        assert wait_reasons.queued_s(run) == pytest.approx(run.wait_s)


def test_strict_fifo_books_the_wait_behind_the_head():
    # Strict FIFO: D is not tried while C, ahead of it, is blocked (30-100); once C starts
    # at 100, D is tried and finds no room until C ends at 130.
    config = SimulationConfig(policy="fifo", policy_options={"strict": True})
    d = by_name(simulate(four_jobs(), cluster(2, 4), config))["D"]
    assert d.first_start_s == 130
    assert d.wait_s_by_code == {Reason.WAITING_BEHIND: 70.0, Reason.CAPACITY: 30.0}
    assert wait_reasons.main_reason(d) == Reason.WAITING_BEHIND
    assert d.wait_code == Reason.CAPACITY  # its last reason before it started
    assert wait_reasons.queued_s(d) == d.wait_s == 100


def test_time_before_the_first_cycle_is_untried():
    # Interval 25 s: B (10) waits for the tick at 25 without any cycle having looked at it.
    config = SimulationConfig(scheduling_interval_s=25.0)
    b = by_name(simulate(four_jobs(), cluster(2, 4), config))["B"]
    assert b.wait_s_by_code == {wait_reasons.UNTRIED: 15.0}


def test_a_job_that_never_fits_is_rejected_as_never_fits():
    trace = TraceWorkload("waits", [Job("huge", 5.0, 10.0, gpus=16)], source="test")
    (run,) = simulate(trace, cluster(2, 4), SimulationConfig()).runs
    assert run.status is JobStatus.REJECTED and run.wait_code == Reason.NEVER_FITS
    assert run.wait_s_by_code is None  # found at its first try, without waiting


def test_every_spell_in_the_queue_is_booked():
    # A job put back in the queue (preempted, reservation expired) starts a new spell; the
    # time outside the queue is not a wait.
    run = JobRun(0, Job("x", 0.0, 1.0, gpus=1), Gang("x", ()))
    wait_reasons.enter_queue(run, 0.0)
    wait_reasons.label(run, Reason.CAPACITY, 0.0)
    wait_reasons.label(run, Reason.QUOTA, 10.0)
    wait_reasons.label(run, Reason.QUOTA, 15.0)  # the same code again: one stretch
    wait_reasons.leave_queue(run, 20.0)
    assert math.isnan(run.wait_since_s) and run.wait_code == Reason.QUOTA
    wait_reasons.enter_queue(run, 50.0)
    wait_reasons.label(run, Reason.CAPACITY, 52.0)
    wait_reasons.leave_queue(run, 60.0)
    wait_reasons.leave_queue(run, 70.0)  # not queued: nothing more
    assert run.wait_s_by_code == {"capacity": 18.0, "quota": 10.0, "untried": 2.0}
    assert wait_reasons.main_reason(run) == "capacity"
    cell = wait_reasons.reasons_cell(run)
    assert cell == "capacity=18;quota=10;untried=2"
    assert wait_reasons.parse_reasons_cell(cell) == run.wait_s_by_code
    run.wait_s_by_code = {"quota": 5.0, "capacity": 5.0}
    assert wait_reasons.main_reason(run) == "capacity"  # a tie goes to the later


def test_reports_show_the_reasons_per_queue(tmp_path):
    # queues are the jobs' tenants: C (queue "big") waits 80 s for capacity, D ("small") 30 s
    result = simulate(
        four_jobs(("a", "a", "big", "small")), cluster(2, 4), SimulationConfig(policy="fifo")
    )
    summary = summarize(result)
    assert summary["wait_reasons"] == {
        "big": {"capacity": {"jobs": 1, "total_s": 80.0, "mean_s": 80.0}},
        "small": {"capacity": {"jobs": 1, "total_s": 30.0, "mean_s": 30.0}},
    }
    write_outputs(result, summary, tmp_path)
    with (tmp_path / "jobs.csv").open() as handle:
        rows = {row["name"]: row for row in csv.DictReader(handle)}
    assert tuple(rows["C"]) == JOB_COLUMNS
    assert rows["C"]["wait_reason"] == rows["C"]["last_wait_reason"] == "capacity"
    assert float(rows["C"]["queued_s"]) == 80 and rows["C"]["wait_s_by_reason"] == "capacity=80"
    assert rows["A"]["wait_reason"] == "" and rows["A"]["wait_s_by_reason"] == ""
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["wait_reasons"]["small"]["capacity"]["mean_s"] == 30
    report = (tmp_path / "report.md").read_text()
    assert "## Why jobs waited" in report
    assert "| big | capacity | 1 | 1.3 min | 1.3 min |" in report
    assert "| small | capacity | 1 | 30.0 s | 30.0 s |" in report


def test_means_are_over_the_jobs_that_waited_for_that_reason():
    runs = [JobRun(i, Job(f"j{i}", 0.0, 1.0, gpus=1), Gang(f"j{i}", (), queue="q")) for i in "01"]
    runs[0].wait_s_by_code = {"capacity": 10.0, "quota": 4.0}
    runs[1].wait_s_by_code = {"capacity": 30.0}
    assert wait_reasons.wait_reasons_by_queue(runs) == {
        "q": {
            "capacity": {"jobs": 2, "total_s": 40.0, "mean_s": 20.0},
            "quota": {"jobs": 1, "total_s": 4.0, "mean_s": 4.0},
        }
    }


@pytest.mark.parametrize("policy", ["fifo", "backfill", "drf", "tiresias"])
def test_the_bundled_sample_books_every_queued_second(policy):
    # Without reservations a job's first wait is all queued time, so the booked seconds of a
    # job never put back in the queue add up to its wait; a requeued one has more.
    spec = RunSpec(SAMPLE_TRACE, SAMPLE_CLUSTER, SimulationConfig(policy=policy))
    result, summary = run_spec(spec)
    known = {str(code) for code in Reason} | {wait_reasons.UNTRIED}
    for run in result.runs:
        assert set(run.wait_s_by_code or {}) <= known
        if math.isnan(run.first_start_s):
            continue
        if run.preemptions == 0:
            assert wait_reasons.queued_s(run) == pytest.approx(run.wait_s, abs=1e-6)
        else:
            assert wait_reasons.queued_s(run) >= run.wait_s - 1e-6
    booked = sum(c["total_s"] for q in summary["wait_reasons"].values() for c in q.values())
    assert booked == pytest.approx(sum(wait_reasons.queued_s(r) for r in result.runs))


def test_sweep_rows_stay_flat():
    # runs.csv and the comparison hold one value per metric; the breakdown is each run's own
    row = run_summary(RunSpec(SAMPLE_TRACE, SAMPLE_CLUSTER, SimulationConfig(policy="fifo")))
    assert "wait_reasons" not in row
    assert all(not isinstance(value, dict | list) for value in row.values())
