"""The first placement on a newly compiled cluster against the next ones (same run).

The extender compiles a new cluster model whenever the nodes change (a topology refresh), and
the first placement on it builds the cluster index (static masks, NVLink groups, GPU-choice
shapes, the domain tree). This reports that first call and the warm calls after it on the
same cluster, for a one-member and a four-member gang of 8-GPU pods, medians over fresh
clusters; numba's kernels are loaded before anything is timed.

    python -m phalanx.bench.first_placement [--nodes 1000,10000,50000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from phalanx.scheduler.engine import place
from phalanx.scheduler.gang import Gang, Member, MemberRequest
from phalanx.scheduler.state import ClusterState
from phalanx.topology.presets import cluster_preset

DEFAULT_NODES = (1000, 10000, 50000)
WARM_CALLS = 21
GPUS_PER_MEMBER = 8


def _gang(members: int) -> Gang:
    request = MemberRequest(gpus=GPUS_PER_MEMBER)
    return Gang(f"g{members}", tuple(Member(f"m{i}", request) for i in range(members)))


def _timed_ms(gang: Gang, state: ClusterState) -> float:
    start = time.perf_counter()
    place(gang, state)
    return (time.perf_counter() - start) * 1e3


def measure(nodes: int, members: int, repeats: int) -> tuple[float, float]:
    """(first, warm) placement times in ms, medians over ``repeats`` fresh clusters."""
    gang = _gang(members)
    cluster = cluster_preset(f"dgx-h100:{nodes}")
    firsts, warms = [], []
    for _ in range(repeats):
        state = ClusterState(cluster.compile())
        firsts.append(_timed_ms(gang, state))
        warms.append(statistics.median(_timed_ms(gang, state) for _ in range(WARM_CALLS)))
    return statistics.median(firsts), statistics.median(warms)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m phalanx.bench.first_placement", description=__doc__
    )
    parser.add_argument("--nodes", default=",".join(map(str, DEFAULT_NODES)))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.nodes.split(",") if n]
    warm_up = ClusterState(cluster_preset("dgx-h100:8").compile())
    for members in (1, 4):
        place(_gang(members), warm_up)
    print(f"load average (1 min) at the start: {os.getloadavg()[0]:.2f}")
    print("| nodes | members | first placement | warm (median of 21) | first / warm |")
    print("|---|---|---|---|---|")
    for nodes in counts:
        for members in (1, 4):
            first, warm = measure(nodes, members, args.repeats)
            print(
                f"| {nodes:,} | {members} | {first:.2f} ms | {warm:.3f} ms | {first / warm:.0f}x |"
            )
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
