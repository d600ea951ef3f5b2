"""Queue policies side by side on a Philly slice, on the cluster sized to the slice's real load.

    python -m phalanx.bench.policy_table                          # Oct 23-29, philly:auto
    python -m phalanx.bench.policy_table --start-day 42 --days 14 --policies fifo,backfill
    python -m phalanx.bench.policy_table --repeats 3              # CPU-time medians of 3

Why: on the trace's own 352 nodes the Philly jobs fill 6-13 % of the GPUs, no queue forms and
every policy prints the same numbers. ``philly:auto`` (``simulator.traces.philly_activity``)
sizes the cluster so that the slice keeps its nodes as busy as Philly's node series says
Philly's were, so queues form at the slice's peaks and the policies can differ. Every policy
runs on the same slice and cluster in the same process (FIFO is the same-run baseline), the
runs alternate policy by policy so that a change in machine load hits all of them, and the
time is the CPU time of the simulation alone (trace loading and cluster building excluded).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace
from typing import Any

from phalanx.bench.shared_data import missing_reason, trace_path
from phalanx.simulator.clusters import resolve_cluster
from phalanx.simulator.config import SimulationConfig
from phalanx.simulator.job import TraceWorkload
from phalanx.simulator.metrics import summarize
from phalanx.simulator.run import simulate
from phalanx.simulator.traces import load_trace

DAY_S = 86400.0
S_PER_H = 3600.0
EXIT_NO_DATA = 2
DEFAULT_START_DAY = 49
"""Days after the slice's first submission (2017-09-04): 2017-10-23, a busy week."""
DEFAULT_DAYS = 7
POLICIES: dict[str, tuple[str, dict[str, Any]]] = {
    "fifo": ("fifo", {}),
    "fifo-strict": ("fifo", {"strict": True}),
    "backfill": ("backfill", {"order": "fifo"}),
    "backfill-sjbf": ("backfill", {"order": "fifo", "candidates": "sjf"}),
    "sjf": ("sjf", {}),
    "drf": ("drf", {}),
    "tiresias": ("tiresias", {}),
    "finish-time-fairness": ("finish-time-fairness", {}),
    "ftf-preemptive": ("finish-time-fairness", {"preemptive": True}),
}
"""Table label -> (queue policy, options). Runtime estimates come from each queue's history
(no ``--oracle-estimates``), as a real scheduler would have them."""
DEFAULT_POLICIES = "fifo,fifo-strict,backfill,sjf,drf,tiresias"


def philly_slice(start_day: float, days: float) -> TraceWorkload:
    """The jobs submitted within ``days`` from ``start_day`` (relative to the first job)."""
    workload = load_trace(f"philly:{trace_path('philly')}")
    lo, hi = start_day * DAY_S, (start_day + days) * DAY_S
    jobs = [j for j in workload.jobs if lo <= j.submit_time_s < hi]
    return replace(workload, jobs=jobs, notes=list(workload.notes))


def run_table(
    workload: TraceWorkload, cluster_spec: str, labels: list[str], repeats: int
) -> list[dict[str, Any]]:
    """One row per policy: its metrics (from the last repeat; runs are deterministic) and the
    median CPU seconds of ``repeats`` simulations."""
    cluster = resolve_cluster(cluster_spec, workload)
    cpu: dict[str, list[float]] = {label: [] for label in labels}
    summaries: dict[str, dict[str, Any]] = {}
    for _ in range(repeats):
        for label in labels:
            policy, options = POLICIES[label]
            config = SimulationConfig(policy=policy, policy_options=dict(options))
            started = time.process_time()
            result = simulate(workload, cluster, config)
            cpu[label].append(time.process_time() - started)
            summaries[label] = summarize(result)
            print(f"  {label}: {cpu[label][-1]:.1f} s", file=sys.stderr, flush=True)
    return [
        {**summaries[label], "policy": label, "cpu_s": statistics.median(cpu[label])}
        for label in labels
    ]


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| policy | mean JCT (h) | p99 JCT (h) | GPU utilisation | worst rho | CPU s | x fifo |",
        "|---|---|---|---|---|---|---|",
    ]
    base = next((r["cpu_s"] for r in rows if r["policy"] == "fifo"), None)
    for r in rows:
        ratio = f"{r['cpu_s'] / base:.2f}" if base else "-"
        lines.append(
            f"| {r['policy']} | {r['jct_mean_s'] / S_PER_H:,.2f} | {r['jct_p99_s'] / S_PER_H:,.1f} "
            f"| {100 * r['gpu_utilisation']:.1f} % | {r['ftf_rho_max']:,.1f} | {r['cpu_s']:.1f} "
            f"| {ratio} |"
        )
    return "\n".join(lines)


def backfill_verdict(rows: list[dict[str, Any]]) -> str | None:
    """Issue 14's goal 2, read off the table when fifo, fifo-strict and backfill all ran."""
    by = {r["policy"]: r for r in rows}
    if not {"fifo", "fifo-strict", "backfill"} <= by.keys():
        return None
    fifo, strict, bf = by["fifo"], by["fifo-strict"], by["backfill"]
    best_mean = min(fifo["jct_mean_s"], strict["jct_mean_s"])
    checks = [
        ("mean JCT <= the better of fifo and fifo-strict", bf["jct_mean_s"] <= best_mean),
        ("p99 JCT <= fifo-strict's", bf["jct_p99_s"] <= strict["jct_p99_s"]),
        ("CPU time <= 1.5x fifo's", bf["cpu_s"] <= 1.5 * fifo["cpu_s"]),
    ]
    return "; ".join(f"{text}: {'yes' if ok else 'NO'}" for text, ok in checks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start-day", type=float, default=DEFAULT_START_DAY)
    parser.add_argument("--days", type=float, default=DEFAULT_DAYS)
    parser.add_argument("--cluster", default="philly:auto")
    parser.add_argument("--policies", default=DEFAULT_POLICIES, help=", ".join(POLICIES))
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    reason = missing_reason(trace_path("philly"))
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return EXIT_NO_DATA
    labels = [p.strip() for p in args.policies.split(",") if p.strip()]
    unknown = [p for p in labels if p not in POLICIES]
    if unknown or args.repeats < 1:
        print(f"error: unknown policy {unknown} (known: {', '.join(POLICIES)})", file=sys.stderr)
        return EXIT_NO_DATA
    workload = philly_slice(args.start_day, args.days)
    if not workload.jobs:
        print("error: no job was submitted in that window", file=sys.stderr)
        return EXIT_NO_DATA
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rows = run_table(workload, args.cluster, labels, args.repeats)
    print(f"{len(workload.jobs):,} jobs, days {args.start_day:g}-{args.start_day + args.days:g}")
    print(f"cluster {rows[0]['cluster']} ({rows[0]['cluster_gpus']:,} GPUs)")
    for note in workload.notes:
        if note.startswith("cluster philly:auto"):
            print(note)
    print(f"CPU seconds: median of {args.repeats}, policies alternated\n")
    print(markdown(rows))
    verdict = backfill_verdict(rows)
    if verdict:
        print(f"\nbackfill: {verdict}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
