"""The FGD paper's fill protocol (Weng et al., ATC '23, section 6.1).

The paper does not replay times: it submits a pod list's pods one at a time, with no
departures, until the GPU demand that has arrived reaches a multiple of the cluster's GPU
capacity (1.3 in the paper), and reports metrics against arrived demand. Pods that do not fit
when they arrive are not retried. As in the authors' artifact (``TunePodsByNodeTotalResource``
with ``shufflePod``), the list is shuffled and then topped up with pods drawn with replacement
while the total stays within the target, or cut from the end while it exceeds it; draws come
from a seeded generator, so a run is a pure function of (pod list, cluster, scorer, seed).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from phalanx.simulator.job import Job, TraceError, TraceWorkload

FGD_DEMAND = 1.3
"""Arrived GPU demand as a multiple of capacity at which the paper stops (``tune=1.3``)."""
DRAW_BATCH = 1024


def fill_workload(
    workload: TraceWorkload, capacity_milli: float, demand: float, seed: int
) -> TraceWorkload:
    """Pods of ``workload`` shuffled, then topped up (drawn with replacement) or cut so that
    their GPU demand is as close to ``demand`` x capacity as whole pods allow without passing
    it; submit times are 0, 1, 2... (arrival order), durations infinite."""
    if not demand > 0:
        raise TraceError(workload.source, f"fill demand must be positive, got {demand}")
    pool = workload.jobs
    sizes = np.array([j.gpu_milli_total for j in pool], dtype=np.float64)
    if not len(pool) or sizes.sum() <= 0:
        raise TraceError(workload.source, "has no GPU demand to fill the cluster with")
    rng = np.random.default_rng(seed)
    target = demand * capacity_milli
    picks = rng.permutation(len(pool)).tolist()
    cum = np.cumsum(sizes[picks])
    if cum[-1] > target:
        picks = picks[: int(np.searchsorted(cum, target, side="right"))]
    else:
        arrived = float(cum[-1])
        full = False
        while not full:
            drawn = rng.integers(0, len(pool), size=DRAW_BATCH)
            for p in drawn.tolist():
                if arrived + sizes[p] > target:
                    full = True
                    break
                arrived += sizes[p]
                picks.append(p)
    width = len(str(len(picks)))
    jobs: list[Job] = [
        replace(
            pool[p],
            name=f"{k:0{width}d}-{pool[p].name}",
            submit_time_s=float(k),
            duration_s=math.inf,
            source=f"{pool[p].source} (draw {k})",
        )
        for k, p in enumerate(picks)
    ]
    return TraceWorkload(
        name=f"{workload.name}-fill{demand:g}",
        jobs=jobs,
        source=workload.source,
        cluster=workload.cluster,
        skipped=workload.skipped,
        tenant_guarantees=dict(workload.tenant_guarantees),
        cluster_notes=list(workload.cluster_notes),
        notes=[
            *workload.notes,
            f"fill protocol: {len(jobs)} pods (the list shuffled, topped up with replacement, "
            f"seed {seed}) up to {demand:g}x GPU capacity; no departures, no retries",
        ],
    )
