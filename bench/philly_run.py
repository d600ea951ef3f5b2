"""The whole Philly slice (74,167 jobs, Sep 4 - Nov 30 2017) through the simulator, timed, and
how run time grows with trace length.

    python -m phalanx.bench.philly_run                          # full run on the trace's cluster
    python -m phalanx.bench.philly_run --scaling 5000,10000,20000,40000,74167
    python -m phalanx.bench.philly_run --cluster philly:100 --policy backfill

Prints the metrics table of the full run, the wall time of the simulation itself (trace
loading and cluster building excluded, reported apart) and, with ``--scaling``, seconds and
microseconds per job for the first N jobs of the trace.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

from phalanx.bench.shared_data import missing_reason, trace_path
from phalanx.simulator.clusters import resolve_cluster
from phalanx.simulator.config import SimulationConfig
from phalanx.simulator.metrics import summarize
from phalanx.simulator.report import metrics_table
from phalanx.simulator.run import simulate
from phalanx.simulator.traces import load_trace

PHILLY_DIR = "philly"
US_PER_S = 1e6
EXIT_NO_DATA = 2
"""Exit status when the public trace is absent: bad input, as for every phalanx command."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster", help="cluster (default: the trace's 352 8-GPU nodes)")
    parser.add_argument("--policy", default="fifo")
    parser.add_argument("--scorer")
    parser.add_argument("--scaling", help="comma-separated job counts to time")
    args = parser.parse_args(argv)
    philly = trace_path(PHILLY_DIR)
    reason = missing_reason(philly)
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return EXIT_NO_DATA

    started = time.perf_counter()
    workload = load_trace(f"philly:{philly}")
    cluster = resolve_cluster(args.cluster, workload)
    loaded_s = time.perf_counter() - started
    config = SimulationConfig(policy=args.policy, scorer=args.scorer)
    result = simulate(workload, cluster, config)
    print(metrics_table(summarize(result)))
    print(f"trace load and cluster build: {loaded_s:.1f} s (not included above)")
    if args.scaling:
        print("\n| jobs | simulated in (s) | us per job |\n|---|---|---|")
        for count in (int(x) for x in args.scaling.split(",")):
            part = replace(workload, jobs=workload.jobs[:count])
            wall = simulate(part, cluster, config).wall_s
            print(f"| {count} | {wall:.2f} | {wall * US_PER_S / count:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
