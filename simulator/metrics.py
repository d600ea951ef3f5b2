"""The run's figures, computed once from the per-job records and the timeline.

Definitions (also in ``docs/simulator.md``):

- ``gpu_allocation_ratio``: allocated share of GPU capacity (GPU shares in milli). Replay: the
  time average from the first arrival to the last event. Fill protocol: at the end, when
  arrived demand has reached the target (the FGD paper's figure).
- ``gpu_utilisation``: useful GPU time, i.e. GPU-seconds of work at full speed, over capacity
  x makespan; below the allocation ratio when placements slow jobs down. Fill protocol: the
  allocation ratio (nothing runs).
- ``fragmentation_ratio``: FGD's fragmented share of idle GPU (:mod:`simulator.fragmentation`);
  replay: mean over the samples; fill: at the end.
- ``jct_*`` over completed jobs (finish - submit); ``queue_delay_*`` over jobs that started
  (first start - submit); ``makespan_s`` from the first submission to the last completion.
- ``jain_fairness``: Jain's index over completed jobs of ``1 / rho`` (each job's speed relative
  to its fair isolated run, below); 1 when every job was treated alike. Tenants' shares against
  their guarantees are in the tenant table.
- ``ftf_rho``: Themis finish-time fairness, JCT over the run time the job would have had alone
  on ``1/N`` of the cluster, N the mean number of jobs in the system during its life:
  ``rho = jct / (duration * max(1, gpus * N / cluster_gpus))``; > 1 means worse than fair.
- ``mean_comm_slowdown_multinode``: over started jobs whose placement spans more than one node
  (``jobs_multinode`` of them), the mean share by which the slowdown model
  (:mod:`simulator.slowdown`) stretches their run for the links they got against the same
  gang on the empty cluster (0.05 = 5 % longer); computed whether or not ``--slowdown``
  applies the stretch, so that runs without it still compare how scorers place such gangs.
- ``wait_reasons``: per queue, per reason code of :mod:`scheduler.reasons`, the jobs that were
  queued under it, their seconds queued in all (every spell, preemptions and expired
  reservations included) and the mean over those jobs (:mod:`simulator.wait_reasons`).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
from phalanx.simulator.records import JobRun, JobStatus, SimulationResult
from phalanx.simulator.wait_reasons import wait_reasons_by_queue

PERCENTILES = (50, 95, 99)


def _stats(prefix: str, values: np.ndarray) -> dict[str, float | None]:
    out: dict[str, float | None] = {
        f"{prefix}_mean_s": _num(values.mean() if values.size else None)
    }
    for p in PERCENTILES:
        out[f"{prefix}_p{p}_s"] = _num(np.percentile(values, p) if values.size else None)
    return out


def _num(value: float | np.floating | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def jain_index(values: np.ndarray) -> float | None:
    if values.size == 0 or not np.any(values):
        return None
    return float(values.sum() ** 2 / (values.size * np.square(values).sum()))


def tenant_table(result: SimulationResult) -> list[dict[str, Any]]:
    """Per tenant: jobs, GPU-hours allocated, share of all allocated GPU-time, guarantee
    (where the trace gives one), mean JCT and wait."""
    timeline = result.timeline
    tenants = sorted({r.gang.tenant for r in result.runs})
    total_area = sum(timeline.tenant_area.values())
    guarantees = result.tenant_guarantees
    rows: list[dict[str, Any]] = []
    for tenant in tenants:
        runs = [r for r in result.runs if r.gang.tenant == tenant]
        done = np.array([r.jct_s for r in runs if r.status is JobStatus.COMPLETED])
        waits = np.array([r.wait_s for r in runs if not math.isnan(r.first_start_s)])
        area = timeline.tenant_area.get(tenant, 0.0)
        rows.append(
            {
                "tenant": tenant,
                "jobs": len(runs),
                "gpu_hours": area / 1000.0 / 3600.0,
                "share": area / total_area if total_area else 0.0,
                "guarantee": guarantees.get(tenant),
                "jct_mean_s": _num(done.mean() if done.size else None),
                "queue_delay_mean_s": _num(waits.mean() if waits.size else None),
            }
        )
    return rows


def summarize(result: SimulationResult) -> dict[str, Any]:
    runs = result.runs
    timeline = result.timeline
    fill = result.fill_demand is not None
    completed = [r for r in runs if r.status is JobStatus.COMPLETED]
    started = [r for r in runs if not math.isnan(r.first_start_s)]
    jct = np.array([r.jct_s for r in completed], dtype=np.float64)
    waits = np.array([r.wait_s for r in started], dtype=np.float64)
    counts = {status: 0 for status in JobStatus}
    for r in runs:
        counts[r.status] += 1

    samples = timeline.sample_array()
    if fill:
        allocation = timeline.allocation_ratio
        utilisation = allocation
        makespan = None
        last = samples[-1] if len(samples) else None
        frag_ratio = float(last[5]) if last is not None else None
        frag_capacity = float(last[6]) if last is not None else None
    else:
        allocation = timeline.mean_allocation_ratio()
        first_submit = min((r.job.submit_time_s for r in runs), default=0.0)
        last_end = max((r.end_s for r in completed), default=first_submit)
        makespan = last_end - first_submit
        work = sum(r.gpus * (r.job.duration_s - r.remaining_s) for r in runs)
        span = timeline.last_s - (timeline.start_s or 0.0)
        utilisation = (
            work / (result.cluster_gpus * span) if span > 0 and result.cluster_gpus else 0.0
        )
        frag_ratio = float(samples[:, 5].mean()) if len(samples) else None
        frag_capacity = float(samples[:, 6].mean()) if len(samples) else None

    rho = _ftf_rho(result, completed)
    multi = [r for r in started if r.gpus > 1 or len(r.gang.members) > 1]
    summary: dict[str, Any] = {
        "workload": result.workload,
        "cluster": result.cluster,
        "cluster_gpus": result.cluster_gpus,
        "policy": result.config.policy,
        "queue_policy": result.queue_policy or result.config.policy,
        "scorer": result.scorer,
        "seed": result.config.seed,
        "protocol": f"fill {result.fill_demand:g}" if fill else "replay",
        "slowdown": result.config.slowdown.enabled,
        "gpu_allocation_ratio": _num(allocation),
        "gpu_utilisation": _num(utilisation),
        "fragmentation_ratio": _num(frag_ratio),
        "fragmentation_of_capacity": _num(frag_capacity),
        **_stats("jct", jct),
        **_stats("queue_delay", waits),
        "makespan_s": _num(makespan),
        "jain_fairness": jain_index(1.0 / rho) if rho.size else None,
        "ftf_rho_max": _num(rho.max()) if rho.size else None,
        "ftf_rho_unfair_fraction": _num((rho > 1.0).mean()) if rho.size else None,
        "preemptions": int(sum(r.preemptions for r in runs)),
        "reservation_expiries": int(sum(r.reservation_expiries for r in runs)),
        "gang_placement_cost_mean": _num(
            np.mean([r.placement_cost for r in multi]) if multi else None
        ),
        "comm_cost_ratio_mean": _num(np.mean([r.cost_ratio for r in multi]) if multi else None),
        **_multinode_slowdown(result, started),
        "jobs_total": len(runs),
        "jobs_completed": counts[JobStatus.COMPLETED],
        "jobs_running": counts[JobStatus.RUNNING] + counts[JobStatus.RESERVED],
        "jobs_queued": counts[JobStatus.QUEUED],
        "jobs_rejected": counts[JobStatus.REJECTED],
        "jobs_unplaced": counts[JobStatus.UNPLACED],
        "arrived_demand": _num(timeline.arrived_milli / timeline.capacity_milli)
        if timeline.capacity_milli
        else None,
        "rows_skipped": result.skipped.total,
        "events": result.events,
        "cycles": result.cycles,
        "wall_s": result.wall_s,
        "wait_reasons": wait_reasons_by_queue(runs),
    }
    return summary


def _multinode_slowdown(result: SimulationResult, started: list[JobRun]) -> dict[str, Any]:
    """How much the model slows the jobs that span nodes: the figure that tells scorers'
    choice of fabric domains apart (a single-node job's links are its node's, whoever
    places it)."""
    model = replace(result.config.slowdown, enabled=True)
    spans = [r for r in started if r.nodes > 1]
    slowdown = [model.stretch(r.gang.comm_intensity, r.cost_ratio) - 1.0 for r in spans]
    return {
        "jobs_multinode": len(spans),
        "mean_comm_slowdown_multinode": _num(np.mean(slowdown) if slowdown else None),
    }


def _ftf_rho(result: SimulationResult, completed: list) -> np.ndarray:
    if not completed or not result.cluster_gpus:
        return np.zeros(0)
    submit = np.array([r.job.submit_time_s for r in completed])
    end = np.array([r.end_s for r in completed])
    duration = np.array([r.job.duration_s for r in completed])
    gpus = np.array([r.gpus for r in completed])
    contention = result.timeline.mean_in_system(submit, end)
    isolated = duration * np.maximum(1.0, gpus * contention / result.cluster_gpus)
    return (end - submit) / isolated
