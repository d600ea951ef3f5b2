"""Tiresias on the 8 Pollux workloads (1.0x load) against Pollux's published Tiresias figure.

    python -m phalanx.bench.pollux_tiresias              # 8 workloads, tiresias and fifo
    python -m phalanx.bench.pollux_tiresias --workloads 6 --interval 0
    python -m phalanx.bench.pollux_tiresias --runtime iterations --scorer none   # as before

Why: Pollux (Qiao et al., OSDI '21) reports Tiresias+TunedJobs at a mean JCT of 4,038 s over
its 8 workloads (``published_results/results-jobload/tiresias-1.0``). Running our ``tiresias``
policy on the same workloads and cluster says whether it is the policy it claims to be; FIFO in
the same run is the baseline that LAS without preemption used to equal.

Set-up, fixed before any result was seen and taken from Pollux's own simulator (adaptdl
``osdi21-artifact`` ``simulator/``): 16 nodes x 4 GPUs; every job runs its stated replicas and
batch size (TunedJobs); a scheduling cycle every 60 s; Tiresias with two queues split at 16
GPU-hours (``_queue_threshold = 3600 * 16``) and no starvation guard (``_solve_starvation =
0``); preempted jobs resume; every start, first or after a preemption, costs 30 s before the
job progresses (``Job.reallocate``: ``rescale_time = 30``).

Run times (``--runtime``): by default Pollux's own model (``goodput``,
:mod:`simulator.traces.pollux_goodput`): progress weighted by statistical efficiency, epoch by
epoch, at the throughput of the placement each start gets, with one-GPU pods per replica as
Pollux's Tiresias asks for them, placed as it places them: most free node first, filled
(``--scorer spread``; ``--scorer none`` for the engine's own best fit). ``iterations`` is
the earlier model: iterations to the last epoch x the profiled step time of replicas packed 4
per node, node-sized pods; it runs Pollux's longest jobs (yolov3, 4 x 64) 12,870 s against
Pollux's 14,102 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from phalanx.bench.shared_data import missing_reason, trace_path
from phalanx.simulator.config import SimulationConfig
from phalanx.simulator.metrics import summarize
from phalanx.simulator.run import simulate
from phalanx.simulator.traces.openb import flat_cluster, pcie_node
from phalanx.simulator.traces.pollux import RUNTIME_MODELS, load_pollux
from phalanx.topology.model import Cluster

POLLUX_DIR = "pollux-adaptdl"
WORKLOADS = tuple(range(1, 9))
NODES, GPUS_PER_NODE = 16, 4
NODE_CPU_MILLI, NODE_MEMORY_MIB = 48_000, 192 * 1024
"""Pollux's testbed node (AWS g4dn.12xlarge: 4 T4, 48 vCPU, 192 GB)."""
POLLUX_INTERVAL_S = 60.0
"""Pollux's simulator runs its policy once a minute (``Cluster.step(seconds=60)``)."""
POLLUX_RESTART_DELAY_S = 30.0
POLLUX_THRESHOLD_GPU_S = 16 * 3600.0
PUBLISHED_TIRESIAS_MEAN_JCT_S = 4038.0
"""Mean over the 8 workloads of Tiresias+TunedJobs' average JCT at 1.0x load (Pollux's raw
results, ``results-jobload/tiresias-1.0/summary.json.gz``)."""
EXIT_NO_DATA = 2


def pollux_cluster() -> Cluster:
    """The 64-GPU cluster of Pollux's evaluation: 16 nodes of 4 T4 GPUs on one flat network."""
    nodes = [
        pcie_node(f"pollux-{i:02d}", "T4", GPUS_PER_NODE, NODE_CPU_MILLI, NODE_MEMORY_MIB)
        for i in range(NODES)
    ]
    return flat_cluster("pollux-16x4", nodes)


POLLUX_SCORER = "spread"
"""Pollux's Tiresias places a job's one-GPU replicas on the node with the most free GPUs,
filling it, then the next (``tiresias.py``, ``free_gpus.most_common(1)``); the ``spread``
scorer (least-allocated node first, filled in that order) places them on the same nodes."""
NO_SCORER = "none"


def configs(
    interval_s: float | None, scorer: str | None = POLLUX_SCORER
) -> dict[str, SimulationConfig]:
    """The policies compared, with Pollux's Tiresias settings; ``scorer`` None: the
    engine's own best fit."""
    tiresias = SimulationConfig(
        policy="tiresias",
        policy_options={"thresholds_gpu_s": [POLLUX_THRESHOLD_GPU_S]},
        scorer=scorer,
        scheduling_interval_s=interval_s,
        restart_delay_s=POLLUX_RESTART_DELAY_S,
    )
    fifo = SimulationConfig(
        scorer=scorer, scheduling_interval_s=interval_s, restart_delay_s=POLLUX_RESTART_DELAY_S
    )
    return {"tiresias": tiresias, "fifo": fifo}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workloads", default=",".join(map(str, WORKLOADS)), help="e.g. 1,6 (default 1-8)"
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=POLLUX_INTERVAL_S,
        help="scheduling interval in s; 0 = event-driven (default 60, as Pollux)",
    )
    parser.add_argument(
        "--runtime",
        choices=RUNTIME_MODELS,
        default="goodput",
        help="run-time model: Pollux's own goodput model (default) or iterations x step time",
    )
    parser.add_argument(
        "--scorer",
        default=POLLUX_SCORER,
        help=f"node scorer (default {POLLUX_SCORER}: Pollux's most-free-node-first; "
        f"{NO_SCORER}: the engine's own best fit)",
    )
    args = parser.parse_args(argv)
    folder = trace_path(POLLUX_DIR, "workloads")
    problem = missing_reason(folder)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_NO_DATA
    interval = args.interval or None
    cluster = pollux_cluster()
    scorer = None if args.scorer == NO_SCORER else args.scorer
    chosen = configs(interval, scorer)
    jct: dict[str, list[float]] = {name: [] for name in chosen}
    print(
        f"cluster {cluster.name}, interval {interval or 'event-driven'} s, "
        f"run-time model {args.runtime}, scorer {args.scorer}"
    )
    print(f"{'workload':>9} " + " ".join(f"{n + ' JCT s':>14} {'preempt':>7}" for n in chosen))
    started = time.perf_counter()
    for index in (int(w) for w in args.workloads.split(",")):
        workload = load_pollux(folder / f"workload-{index}.csv", runtime=args.runtime)
        cells = []
        for name, config in chosen.items():
            summary = summarize(simulate(workload, cluster, config))
            jct[name].append(summary["jct_mean_s"])
            cells.append(f"{summary['jct_mean_s']:>14,.0f} {summary['preemptions']:>7}")
        print(f"{index:>9} " + " ".join(cells))
    means = {name: statistics.fmean(values) for name, values in jct.items()}
    print(f"{'mean':>9} " + " ".join(f"{means[n]:>14,.0f} {'':>7}" for n in chosen))
    ratio = means["tiresias"] / PUBLISHED_TIRESIAS_MEAN_JCT_S
    print(
        f"tiresias mean JCT {means['tiresias']:,.0f} s = {ratio:.2f}x Pollux's published "
        f"Tiresias+TunedJobs {PUBLISHED_TIRESIAS_MEAN_JCT_S:,.0f} s (over workloads "
        f"{args.workloads}); fifo {means['fifo']:,.0f} s; "
        f"{time.perf_counter() - started:.1f} s wall"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
