"""DRF's run time against FIFO's on the same traces: CPU seconds, median of 3, same process.

    python -m phalanx.bench.drf_speed                 # bundled sample + a Philly slice
    python -m phalanx.bench.drf_speed --philly-jobs 0 # bundled sample only

Why: DRF's admission used to rescan every running and pending gang for each gang it
admitted, so a contended run took 12x FIFO's time; the target is at most 2x. Cases: the
bundled Philly sample on its own 96-GPU cluster and on 32 GPUs (contended), and, when the
shared traces are present, the first ``--philly-jobs`` jobs of the Philly trace on the trace's
own 2,816-GPU cluster and on ``philly:40`` (320 GPUs, contended).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import replace

from phalanx.bench.shared_data import missing_reason, trace_path
from phalanx.simulator.clusters import resolve_cluster
from phalanx.simulator.config import SimulationConfig
from phalanx.simulator.data import SAMPLE_TRACE
from phalanx.simulator.metrics import summarize
from phalanx.simulator.run import simulate
from phalanx.simulator.traces import load_trace

REPEATS = 3
POLICIES = ("fifo", "drf")


def cases(philly_jobs: int) -> list[tuple[str, object, str]]:
    """(label, workload, cluster spec) of every case that can run here."""
    sample = load_trace(SAMPLE_TRACE)
    found = [("sample, 96 GPUs", sample, "dgx-h100:12"), ("sample, 32 GPUs", sample, "dgx-h100:4")]
    philly = trace_path("philly")
    if philly_jobs and missing_reason(philly) is None:
        trace = load_trace(f"philly:{philly}")
        head = replace(trace, jobs=trace.jobs[:philly_jobs])
        found.append((f"philly first {philly_jobs}, own cluster", head, "philly"))
        found.append((f"philly first {philly_jobs}, philly:40", head, "philly:40"))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--philly-jobs", type=int, default=1000, help="0 skips Philly")
    args = parser.parse_args(argv)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("CPU seconds of the simulation (median of 3, fifo and drf alternated), mean JCT in s")
    print(f"{'case':<36} {'fifo s':>7} {'drf s':>7} {'ratio':>6} {'fifo JCT':>10} {'drf JCT':>10}")
    for label, workload, spec in cases(args.philly_jobs):
        cluster = resolve_cluster(spec, workload)
        cpu: dict[str, list[float]] = {p: [] for p in POLICIES}
        jct: dict[str, float] = {}
        for _ in range(REPEATS):
            for policy in POLICIES:  # alternated, so that a change in load hits both
                started = time.process_time()
                result = simulate(workload, cluster, SimulationConfig(policy=policy))
                cpu[policy].append(time.process_time() - started)
                jct[policy] = summarize(result)["jct_mean_s"]
        fifo_s, drf_s = (statistics.median(cpu[p]) for p in POLICIES)
        print(
            f"{label:<36} {fifo_s:>7.2f} {drf_s:>7.2f} {drf_s / fifo_s:>5.2f}x "
            f"{jct['fifo']:>10,.0f} {jct['drf']:>10,.0f}",
            flush=True,
        )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
