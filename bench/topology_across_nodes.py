"""Multi-node gangs on a rail-optimised fat tree: the ``topology`` scorer against ``binpack``.

    python -m phalanx.bench.topology_across_nodes                    # 40 seeds, 5-10 min
    python -m phalanx.bench.topology_across_nodes --seeds 0-2 --jobs 1000

Why: a gang of several nodes runs at the speed of the fabric level it spans. On 32 DGX H100
nodes in scalable units (SUs) of 4 under a 2:1 oversubscribed spine, a gang inside one SU talks
over its rail leaf (cost 10), a gang across SUs through the spine (22), so the slowdown model
(:mod:`simulator.slowdown`) stretches it by up to 36 % (an LM job). Whether a gang finds an SU
with room depends on how every earlier job was placed, and a gang that fits only across
units now can wait for one (the ``link-hold`` permit, :mod:`policies.permit.link_hold`). This
report runs every variant (:data:`VARIANTS`: binpack, topology, topology with the hold on
run-time estimates from history or on declared run times, binpack with the hold) on the same
seeded workloads in the same process, seed by seed, and prints the mean communication
slowdown of the jobs that span nodes (``mean_comm_slowdown_multinode``) and the mean JCT,
against binpack's.

The workload is the synthetic generator with Philly's job sizes (``GPU_MIX``: the shares of
1, 2, 4 and 8 GPUs of the Philly slice, and its 16-, 24- and 32-GPU jobs twenty times as
common, 5 % of jobs, so that a run has about a hundred multi-node jobs), the four job families
the slowdown model is calibrated on, log-normal run times (median 30 min, mean 1.5 h) and
arrivals that offer about 76 % of the GPUs, so that queues form at peaks. The slowdown model is
on: a worse placement costs run time, which the JCT column weighs. Cross-unit placements are
rare events (a few per thousand jobs), so one seed says little: the summary pools every
multi-node job of all seeds.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass
from typing import Any

from phalanx.simulator.config import SimulationConfig
from phalanx.simulator.metrics import summarize
from phalanx.simulator.records import SimulationResult
from phalanx.simulator.run import simulate
from phalanx.simulator.slowdown import SlowdownModel
from phalanx.simulator.sweep import parse_seeds
from phalanx.simulator.traces import load_trace
from phalanx.topology.model import Cluster
from phalanx.topology.presets import dgx_h100, rail_fat_tree

NODES = 32
SU_NODES = 4
OVERSUBSCRIPTION = 2.0
DEFAULT_SEEDS = "0-39"
DEFAULT_JOBS = 2000
DEFAULT_RATE_PER_H = 58.0
"""About 76 % of the 256 GPUs offered: 2.17 GPUs x 5,544 s mean run time per job."""
GPU_MIX = "1:93.4/2:2.06/4:2.27/8:1.95/16:4.4/24:0.16/32:1"
"""Percent of jobs by GPUs: the Philly slice's (74,167 jobs), multi-node sizes x 20."""
CLASSES = "LM:1/Transformer:1/ResNet-18:1/ResNet-50:1"
GOAL_RATIO = 1.5
"""Issue 14, goal 5: binpack's mean multi-node slowdown over topology's."""
S_PER_H = 3600.0
TIME_LIMIT_MAX_FACTOR = 4.0
"""Stated time limits overestimate run times by up to 4x before rounding up to a round value
(15 min, 30 min, 1, 2, 4, 8, 12, 24 h...): over seeds 0-19's jobs the stated limit is 3.0x
the run time at the median, 1.4-6.9x for 90 % of jobs (more for jobs much shorter than 15
minutes)."""
ON_ARRIVAL = "slower_on_arrival"
AFTER_WAIT = "slower_after_wait"


def rail_fat_tree_cluster(
    nodes: int = NODES, su_nodes: int = SU_NODES, oversubscription: float = OVERSUBSCRIPTION
) -> Cluster:
    """DGX H100 nodes in scalable units of ``su_nodes`` under an oversubscribed spine (the
    same cluster as ``examples/clusters/rail-fat-tree-32.yaml`` at the defaults)."""
    members = [dgx_h100(f"h100-{i:04d}") for i in range(nodes)]
    levels = rail_fat_tree(members, su_nodes, oversubscription)
    return Cluster(f"rail-fat-tree-{nodes}", members, levels)


def workload_spec(
    jobs: int, rate_per_h: float, seed: int | str, time_limit_max_factor: float = 0.0
) -> str:
    """The synthetic trace spec of one seed (``seed="S"`` names it in the heading); with a
    factor, the same jobs also state time limits (:mod:`simulator.traces.synthetic`)."""
    limits = f",time_limit_max_factor={time_limit_max_factor:g}" if time_limit_max_factor else ""
    return (
        f"synthetic:jobs={jobs},rate_per_h={rate_per_h:g},gpus={GPU_MIX},"
        f"classes={CLASSES},seed={seed}{limits}"
    )


@dataclass
class Pooled:
    """One scorer's figures summed over seeds, so that means weigh every job alike."""

    multinode_jobs: int = 0
    slowdown_sum: float = 0.0
    completed: int = 0
    jct_sum_s: float = 0.0
    slower_on_arrival: int = 0
    slower_after_wait: int = 0

    def add(self, summary: dict[str, Any]) -> None:
        self.slower_on_arrival += summary[ON_ARRIVAL]
        self.slower_after_wait += summary[AFTER_WAIT]
        jobs = summary["jobs_multinode"]
        self.multinode_jobs += jobs
        self.slowdown_sum += (summary["mean_comm_slowdown_multinode"] or 0.0) * jobs
        self.completed += summary["jobs_completed"]
        self.jct_sum_s += (summary["jct_mean_s"] or 0.0) * summary["jobs_completed"]

    @property
    def slowdown(self) -> float:
        return self.slowdown_sum / self.multinode_jobs if self.multinode_jobs else 0.0

    @property
    def jct_s(self) -> float:
        return self.jct_sum_s / self.completed if self.completed else 0.0


def slower_starts(result: SimulationResult) -> dict[str, int]:
    """Multi-node jobs placed on slower links than the same gang on the empty cluster, split
    by whether they started on arrival (the arrangement of free nodes decided) or after
    waiting (they took the first nodes to free up, wherever those were)."""
    slower = [
        r for r in result.runs if r.nodes > 1 and math.isfinite(r.cost_ratio) and r.cost_ratio > 1.0
    ]
    waited = sum(r.first_start_s > r.job.submit_time_s for r in slower)
    return {ON_ARRIVAL: len(slower) - waited, AFTER_WAIT: waited}


@dataclass(frozen=True)
class Variant:
    """One way of scheduling the same workload."""

    label: str
    scorer: str
    permit: str | None = None
    declared_run_times: bool = False
    """Each gang declares its run time (the trace's duration, as a user's time limit would):
    ``--oracle-estimates``. Otherwise estimates come from finished jobs' history."""
    permit_options: tuple[tuple[str, object], ...] = ()
    """Options of the permit (``share``), as (name, value) pairs."""
    time_limit_max_factor: float = 0.0
    """Each job states a time limit of its run time x 1 to this factor, rounded up to round
    values as users write them; the policies read it as the job's own estimate."""

    def config(self) -> SimulationConfig:
        return SimulationConfig(
            scorer=self.scorer,
            permit=self.permit,
            permit_options=dict(self.permit_options),
            oracle_estimates=self.declared_run_times,
            slowdown=SlowdownModel(enabled=True),
        )


BASELINE = Variant("binpack", "binpack")
VARIANTS = (
    BASELINE,
    Variant("topology", "topology"),
    Variant("topology + link-hold, run times from history", "topology", "link-hold"),
    Variant("topology + link-hold, declared run times", "topology", "link-hold", True),
    Variant(
        "topology + link-hold (share 1, the break-even hold), declared run times",
        "topology",
        "link-hold",
        True,
        permit_options=(("share", 1.0),),
    ),
    Variant(
        "topology + link-hold (nodes not kept), declared run times",
        "topology",
        "link-hold",
        True,
        permit_options=(("keep_nodes", False),),
    ),
    Variant(
        f"topology + link-hold, time limits (x1-{TIME_LIMIT_MAX_FACTOR:g}, rounded up)",
        "topology",
        "link-hold",
        time_limit_max_factor=TIME_LIMIT_MAX_FACTOR,
    ),
    Variant("binpack + link-hold, declared run times", "binpack", "link-hold", True),
)
"""The baseline first. FIFO reads no run-time estimate, so the variants without a permit
schedule the same with or without declared run times."""
GOAL_VARIANT = VARIANTS[3]
"""The variant the goal is judged on: the topology scorer with the hold, each gang declaring
its run time (the hold's worth depends on knowing which jobs are long)."""


def run_seed(
    cluster: Cluster, jobs: int, rate_per_h: float, seed: int, variants=VARIANTS
) -> dict[str, dict[str, Any]]:
    """Every variant on one seed's workload, baseline first; their summaries by label. The
    variants with time limits run the same jobs, each stating its limit."""
    loaded: dict[float, Any] = {}
    out = {}
    for variant in variants:
        factor = variant.time_limit_max_factor
        if factor not in loaded:
            loaded[factor] = load_trace(workload_spec(jobs, rate_per_h, seed, factor))
        result = simulate(loaded[factor], cluster, variant.config())
        out[variant.label] = {**summarize(result), **slower_starts(result)}
    return out


def ratio(base: float, other: float) -> float:
    """``base / other``; NaN when neither slowed anything (no multi-node job crossed)."""
    if other > 0:
        return base / other
    return float("inf") if base > 0 else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default=DEFAULT_SEEDS, help="e.g. 0-9 or 1,2,3")
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS)
    parser.add_argument("--rate-per-h", type=float, default=DEFAULT_RATE_PER_H)
    args = parser.parse_args(argv)
    seeds = parse_seeds(args.seeds)
    cluster = rail_fat_tree_cluster()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"cluster: {NODES} DGX H100 nodes, rail-fat-tree, SUs of {SU_NODES} nodes, spine "
        f"oversubscription {OVERSUBSCRIPTION:g}; workload: "
        f"{workload_spec(args.jobs, args.rate_per_h, 'S')}"
    )
    goal = GOAL_VARIANT.label
    print(
        f"\nper seed, binpack against {goal}:\n\n| seed | multi-node jobs | slowdown binpack | "
        "slowdown | x | JCT binpack (h) | JCT (h) |"
    )
    print("|---|---|---|---|---|---|---|")
    pooled = {v.label: Pooled() for v in VARIANTS}
    for seed in seeds:
        runs = run_seed(cluster, args.jobs, args.rate_per_h, seed)
        for label, summary in runs.items():
            pooled[label].add(summary)
        b, t = runs[BASELINE.label], runs[goal]
        bs, ts = b["mean_comm_slowdown_multinode"] or 0.0, t["mean_comm_slowdown_multinode"] or 0.0
        print(
            f"| {seed} | {b['jobs_multinode']} | {100 * bs:.2f} % | {100 * ts:.2f} % | "
            f"{ratio(bs, ts):.2f} | {b['jct_mean_s'] / S_PER_H:.3f} | "
            f"{t['jct_mean_s'] / S_PER_H:.3f} |",
            flush=True,
        )
    base = pooled[BASELINE.label]
    print(f"\nall {len(seeds)} seeds, every job weighed alike:\n")
    print(
        "| variant | multi-node jobs | mean comm slowdown (multi-node) | binpack / it | "
        "mean JCT (h) | JCT - binpack (s) | on slower links: started on arrival / after waiting |"
    )
    print("|---|---|---|---|---|---|---|")
    for variant in VARIANTS:
        p = pooled[variant.label]
        print(
            f"| {variant.label} | {p.multinode_jobs} | {100 * p.slowdown:.2f} % | "
            f"{ratio(base.slowdown, p.slowdown):.2f}x | {p.jct_s / S_PER_H:.4f} | "
            f"{p.jct_s - base.jct_s:+.1f} | {p.slower_on_arrival} / {p.slower_after_wait} |"
        )
    topo = pooled[goal]
    slow_x = ratio(base.slowdown, topo.slowdown)
    jct_x = topo.jct_s / base.jct_s if base.jct_s else float("nan")
    jct_verdict = "met" if topo.jct_s <= base.jct_s else "NOT met"
    print(
        f"\n{goal}: slowdown binpack / it {slow_x:.2f}x (goal >= {GOAL_RATIO:g}x: "
        f"{'met' if slow_x >= GOAL_RATIO else 'NOT met'}); mean JCT it / binpack: "
        f"{jct_x:.5f}, {topo.jct_s - base.jct_s:+.1f} s (goal: no worse, {jct_verdict})"
    )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
