"""Pollux (Qiao et al., OSDI '21) workloads: ``workload-N.csv`` with
``name,time,application,num_replicas,batch_size``, 160 Philly-sampled jobs over 8 hours.

Run times come from the ``app_profiles/`` folder next to the workloads (see
:mod:`simulator.traces.app_profiles`): each job runs its stated replicas and batch size to
completion, Pollux's "TunedJobs" baseline rather than Pollux's own elastic scaling.
"""

from __future__ import annotations

from pathlib import Path

from phalanx.simulator.job import TraceWorkload
from phalanx.simulator.traces.app_profiles import load_profiled_workload


def load_pollux(path: Path, *, profiles: Path | None = None, strict: bool = False) -> TraceWorkload:
    return load_profiled_workload(path, profiles=profiles, suffix="", strict=strict, label="pollux")
