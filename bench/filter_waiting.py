"""One member's filter while many gangs wait: ``python -m phalanx.bench.filter_waiting``.

A 1,000-node cluster is filled by one running gang so that no 8-GPU member fits, then W gangs
of 8 x 8 GPUs wait for room (every member present, so each is quorate and put to the scheduling
cycle). Timed: the planner's filter of one member of a waiting gang, every node offered, as
kube-scheduler retries it, at ``--rate`` filters per second (the planner re-runs a full cycle at
least once a second while gangs wait, so the rate decides how many filters pay for one); medians,
p99 and the maximum over ``--repeats`` filters, for each W. The baseline in the same run is
W = 0: the same filter with no other gang waiting. The goal of the gang protocol is <= 5 ms p99
up to 1,000 waiting gangs.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from phalanx.extender.binding import RecordingBinder
from phalanx.extender.config import ServeConfig
from phalanx.extender.runtime import planner_factory
from phalanx.topology.presets import cluster_preset

DEFAULT_NODES = 1000
DEFAULT_WAITING = (0, 100, 400, 1000)
DEFAULT_REPEATS = 300
DEFAULT_RATE = 100.0
"""Filters per second: about what kube-scheduler sends while it retries waiting members."""
MEMBERS = 8
GPUS = 8
MS_PER_S = 1000.0


def member_pod(gang: str, rank: int, size: int) -> dict:
    return {
        "metadata": {
            "name": f"{gang}-{rank}",
            "namespace": "bench",
            "uid": f"uid-{gang}-{rank}",
            "annotations": {"phalanx.io/gang": gang, "phalanx.io/gang-size": str(size)},
        },
        "spec": {
            "containers": [{"name": "w", "resources": {"limits": {"nvidia.com/gpu": str(GPUS)}}}]
        },
        "status": {"phase": "Pending"},
    }


def measure(nodes: int, waiting: int, repeats: int, rate: float = DEFAULT_RATE) -> dict[str, float]:
    cluster = cluster_preset(f"dgx-h100:{nodes}")
    planner = planner_factory(ServeConfig())(cluster)
    names = [n.name for n in cluster.nodes]
    binder = RecordingBinder()
    filler = nodes - MEMBERS // 2  # leaves room for half a gang: nobody waiting fits
    for rank in range(filler):
        planner.observe_pod(member_pod("filler", rank, filler))
    for rank in range(filler):
        (node,) = planner.filter(member_pod("filler", rank, filler), names).passing
        assert planner.bind("bench", f"filler-{rank}", f"uid-filler-{rank}", node, binder) == ""
    for g in range(waiting):
        for rank in range(MEMBERS):
            planner.observe_pod(member_pod(f"w{g}", rank, MEMBERS))
    probe = [member_pod("probe", rank, MEMBERS) for rank in range(MEMBERS)]
    for pod in probe:
        planner.observe_pod(pod)
    times_ms = []
    next_s = time.perf_counter()
    for i in range(repeats):
        next_s += 1.0 / rate
        time.sleep(max(0.0, next_s - time.perf_counter()))
        start = time.perf_counter()
        decision = planner.filter(probe[i % MEMBERS], names)
        times_ms.append((time.perf_counter() - start) * MS_PER_S)
        assert decision.passing == []
    return {
        "waiting_gangs": waiting,
        "median_ms": round(float(np.median(times_ms)), 3),
        "p99_ms": round(float(np.percentile(times_ms, 99)), 3),
        "max_ms": round(float(np.max(times_ms)), 3),
        "rate_per_s": rate,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=DEFAULT_NODES)
    parser.add_argument("--waiting", default=",".join(map(str, DEFAULT_WAITING)))
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="filters per second")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = [measure(args.nodes, int(w), args.repeats, args.rate) for w in args.waiting.split(",")]
    base = rows[0]["p99_ms"] or float("nan")
    for row in rows:
        row["p99_ratio_to_first"] = round(row["p99_ms"] / base, 2)
    report = {"nodes": args.nodes, "rows": rows, "load_average": list(os.getloadavg())}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{args.nodes} nodes, load average {report['load_average'][0]:.2f}")
        for row in rows:
            print(
                f"  {row['waiting_gangs']:>5} waiting gangs: filter median {row['median_ms']} ms,"
                f" p99 {row['p99_ms']} ms ({row['p99_ratio_to_first']}x), max {row['max_ms']} ms"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
