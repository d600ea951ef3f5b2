"""Pollux (Qiao et al., OSDI '21) workloads: ``workload-N.csv`` with
``name,time,application,num_replicas,batch_size``, 160 Philly-sampled jobs over 8 hours.

Run times come from the ``app_profiles/`` folder next to the workloads: each job runs its
stated replicas and batch size to completion, Pollux's "TunedJobs" baseline rather than
Pollux's own elastic scaling. Two run-time models:

- ``iterations`` (the default of ``load_trace``): iterations to the last epoch x the profiled
  step time, replicas packed 4 per node, one pod per node (:mod:`simulator.traces.app_profiles`);
- ``goodput``: what Pollux's own simulator does (:mod:`simulator.traces.pollux_goodput`):
  progress weighted by statistical efficiency, epoch by epoch, at the throughput of the
  placement the job actually gets. Every replica is then a one-GPU pod, as in Pollux (its
  Tiresias asks ``{"nvidia.com/gpu": 1}`` per replica and spreads a job over the nodes with the
  most free GPUs), so a job may span more nodes than it needs and run slower there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from phalanx.simulator.job import Job, TraceWorkload
from phalanx.simulator.traces.app_profiles import (
    WORKLOAD_COLUMNS,
    find_profiles,
    load_profiled_workload,
    workload_file,
)
from phalanx.simulator.traces.pollux_goodput import PolluxApplications, TunedJobRuntime
from phalanx.simulator.traces.rows import JobCollector, Row, RowReader

RUNTIME_MODELS = ("iterations", "goodput")
RuntimeModel = Literal["iterations", "goodput"]


def load_pollux(
    path: Path,
    *,
    profiles: Path | None = None,
    strict: bool = False,
    runtime: RuntimeModel = "iterations",
) -> TraceWorkload:
    """A Pollux workload; ``runtime`` picks the run-time model (module docstring)."""
    if runtime == "iterations":
        return load_profiled_workload(
            path, profiles=profiles, suffix="", strict=strict, label="pollux"
        )
    if runtime != "goodput":
        raise ValueError(f"unknown run-time model {runtime!r}; known: {RUNTIME_MODELS}")
    source = workload_file(path)
    apps = PolluxApplications(profiles or find_profiles(source))
    collector = JobCollector(strict=strict)

    def make(row: Row, where: str) -> Job:
        app = row.text("application")
        replicas = row.integer("num_replicas")
        model = TunedJobRuntime(apps.get(app), replicas, row.integer("batch_size"))
        return Job(
            name=row.text("name"),
            submit_time_s=row.number("time"),
            duration_s=model.duration_s(),
            gpus=replicas,
            pods=replicas,
            job_class=app,
            source=where,
            placement_stretch=model.stretch,
        )

    collector.add_rows(RowReader(source, WORKLOAD_COLUMNS), make)
    return TraceWorkload(
        name=f"pollux-{source.stem}",
        jobs=collector.jobs,
        source=str(source),
        skipped=collector.skipped,
        notes=[
            "pollux: fixed-size jobs, one-GPU pod per replica; run time = Pollux's goodput "
            "model (efficiency-weighted progress per epoch at the placement's throughput, "
            f"{apps.folder})"
        ],
    )
