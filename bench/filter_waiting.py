"""One member's filter while many gangs wait: ``python -m phalanx.bench.filter_waiting``.

A 1,000-node cluster is filled by one running gang so that no 8-GPU member fits, then W gangs
of 8 x 8 GPUs wait for room (every member present, so each is quorate and put to the scheduling
cycle). Timed: the planner's filter of one member of a waiting gang, every node offered, as
kube-scheduler retries it, at ``--rate`` filters per second (the planner re-runs a full cycle at
least once a second while gangs wait, so the rate decides how many filters pay for one); medians,
p99 and the maximum over ``--repeats`` filters, for each W. The baseline in the same run is
W = 0: the same filter with no other gang waiting. The goal of the gang protocol is <= 5 ms p99
up to 1,000 waiting gangs.

``--churn`` fills the cluster with one-GPU pods instead (about eight thousand running plans on
1,000 nodes) and, before each timed filter, ends one of them and binds a new one in its place,
as a busy cluster does between two retries: the ledger changes, so no remembered cycle answers
and every waiting gang is put through the cycle again.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from phalanx.extender.binding import RecordingBinder
from phalanx.extender.config import ServeConfig
from phalanx.extender.planner import Planner
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


def member_pod(gang: str, rank: int, size: int, gpus: int = GPUS) -> dict:
    annotations = {"phalanx.io/gang": gang, "phalanx.io/gang-size": str(size)} if size > 1 else {}
    return {
        "metadata": {
            "name": f"{gang}-{rank}",
            "namespace": "bench",
            "uid": f"uid-{gang}-{rank}",
            "annotations": annotations,
        },
        "spec": {
            "containers": [{"name": "w", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]
        },
        "status": {"phase": "Pending"},
    }


class Filler:
    """What fills the cluster: one gang of one node per member, or (``churn``) one-GPU pods on
    every GPU but half a node's, which :meth:`turn_over` ends and replaces one at a time."""

    def __init__(self, planner: Planner, names: list[str], churn: bool) -> None:
        self.planner, self.names, self.binder = planner, names, RecordingBinder()
        nodes = len(names)
        self.size = 1 if churn else nodes - MEMBERS // 2  # nobody waiting fits
        count = nodes * GPUS - GPUS // 2 if churn else self.size
        self.gpus = 1 if churn else GPUS
        self.placed: list[tuple[dict, str]] = []
        for rank in range(count if not churn else 0):
            planner.observe_pod(member_pod("filler", rank, self.size, self.gpus))
        for rank in range(count):
            self._place(rank)
        self.next_rank = count

    def _place(self, rank: int) -> None:
        pod = member_pod("filler" if self.size > 1 else "one", rank, self.size, self.gpus)
        meta = pod["metadata"]
        (node,) = self.planner.filter(pod, self.names).passing
        assert self.planner.bind("bench", meta["name"], meta["uid"], node, self.binder) == ""
        self.placed.append((pod, node))

    def turn_over(self) -> None:
        """One pod ends and a new one is bound in its place."""
        pod, node = self.placed.pop(0)
        done = {**pod, "spec": {**pod["spec"], "nodeName": node}, "status": {"phase": "Succeeded"}}
        self.planner.observe_pod(done)
        self._place(self.next_rank)
        self.next_rank += 1


def measure(
    nodes: int, waiting: int, repeats: int, rate: float = DEFAULT_RATE, churn: bool = False
) -> dict[str, float]:
    cluster = cluster_preset(f"dgx-h100:{nodes}")
    planner = planner_factory(ServeConfig())(cluster)
    names = [n.name for n in cluster.nodes]
    filler = Filler(planner, names, churn)
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
        if churn:
            filler.turn_over()
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
        "running_plans": len(filler.placed) if churn else 1,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=DEFAULT_NODES)
    parser.add_argument("--waiting", default=",".join(map(str, DEFAULT_WAITING)))
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="filters per second")
    parser.add_argument(
        "--churn", action="store_true", help="one-GPU pods end and start between filters"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = [
        measure(args.nodes, int(w), args.repeats, args.rate, args.churn)
        for w in args.waiting.split(",")
    ]
    base = rows[0]["p99_ms"] or float("nan")
    for row in rows:
        row["p99_ratio_to_first"] = round(row["p99_ms"] / base, 2)
    report = {
        "nodes": args.nodes,
        "churn": args.churn,
        "rows": rows,
        "load_average": list(os.getloadavg()),
    }
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
