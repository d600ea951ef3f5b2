"""Finish-time fairness on the 8 Sia Philly workloads: worst rho per workload, same-run FIFO.

    python -m phalanx.bench.sia_fairness                       # every variant, 8 workloads
    python -m phalanx.bench.sia_fairness --variants fifo,ftf-preemptive --workloads 1,2

Why: Themis' point is that no job should finish much later than it would on its own slice of
the cluster (rho = shared JCT / isolated JCT, ``ftf_rho_max`` in the summary). FIFO's worst rho
on these workloads is 27; ordering by estimated rho alone cannot help a short job stuck behind
long ones that hold every GPU, so the variants add preemption ranked by rho (worse-off gangs
evict better-off ones, jobs resume with their progress) and estimates from the job's own
history (its application's past runtimes, ``policies/estimates.py``), never the trace's
durations. Cluster: the 64-GPU cluster of Pollux's evaluation (16 nodes x 4 T4), on which
these Pollux-schema workloads were sampled; event-driven cycles, no restart delay unless
``--restart-delay``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

from phalanx.bench.pollux_tiresias import pollux_cluster
from phalanx.bench.shared_data import missing_reason, trace_path
from phalanx.simulator.config import SimulationConfig
from phalanx.simulator.metrics import summarize
from phalanx.simulator.run import simulate
from phalanx.simulator.traces import load_trace

SIA_DIR = ("sia", "workloads", "philly")
WORKLOADS = tuple(range(1, 9))
EXIT_NO_DATA = 2
FTF = "finish-time-fairness"
VARIANTS: dict[str, dict[str, Any]] = {
    "fifo": {},
    "ftf": {"policy": FTF},
    "tiresias": {"policy": "tiresias"},
    "ftf-preemptive": {"policy": FTF, "policy_options": {"preemptive": True}},
}
"""Label -> SimulationConfig fields; none uses the trace's durations as estimates."""


def config(label: str, restart_delay_s: float) -> SimulationConfig:
    fields = dict(VARIANTS[label])
    fields["policy_options"] = dict(fields.get("policy_options", {}))
    return SimulationConfig(restart_delay_s=restart_delay_s, **fields)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default=",".join(map(str, WORKLOADS)))
    parser.add_argument("--variants", default=",".join(VARIANTS), help=", ".join(VARIANTS))
    parser.add_argument("--restart-delay", type=float, default=0.0)
    args = parser.parse_args(argv)
    folder = trace_path(*SIA_DIR)
    problem = missing_reason(folder)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_NO_DATA
    labels = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in labels if v not in VARIANTS]
    if unknown:
        print(f"error: unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}", file=sys.stderr)
        return EXIT_NO_DATA
    cluster = pollux_cluster()
    print(f"cluster {cluster.name}; cells: worst rho / mean JCT s / preemptions")
    print("| workload | " + " | ".join(labels) + " |")
    print("|---" * (len(labels) + 1) + "|")
    worst: dict[str, list[float]] = {v: [] for v in labels}
    jct: dict[str, list[float]] = {v: [] for v in labels}
    started = time.perf_counter()
    for index in (int(w) for w in args.workloads.split(",")):
        workload = load_trace(f"sia:{folder / f'workload-{index}.csv'}")
        cells = []
        for label in labels:
            summary = summarize(simulate(workload, cluster, config(label, args.restart_delay)))
            worst[label].append(summary["ftf_rho_max"])
            jct[label].append(summary["jct_mean_s"])
            cells.append(
                f"{summary['ftf_rho_max']:,.1f} / {summary['jct_mean_s']:,.0f} / "
                f"{summary['preemptions']}"
            )
        print(f"| {index} | " + " | ".join(cells) + " |", flush=True)
    print(
        "| **worst / mean JCT** | "
        + " | ".join(f"**{max(worst[v]):,.1f}** / {statistics.fmean(jct[v]):,.0f}" for v in labels)
        + " |"
    )
    print(f"{time.perf_counter() - started:.1f} s wall")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
