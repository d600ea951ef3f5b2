"""Placement time against gang size and cluster size, each cell beside a baseline measured in
the same run: the minimal compiled first fit of :mod:`bench.first_fit` over the same arrays.

    python -m phalanx.bench.placement_scaling                      # 1-512 members x 1k-50k nodes
    python -m phalanx.bench.placement_scaling --nodes 1000 --members 1,8 --repeats 11

Clusters are the half-full fragmented DGX H100 clusters of :mod:`bench.placement_report`;
members ask for ``--gpus`` whole GPUs each. Each cell is the median of ``--repeats`` runs of
``scheduler.engine.place`` (fast path) and of the first fit, their ratio, the fast path again
with the ledger written between calls (the placement reserved and released, untimed: derived
state that follows the ledger, such as one member's free-state groups, catches up inside the
timed call), and the time of pricing the fast placement (``placement_cost``) with its share of
the placement. The load
average is printed before and after: on a shared machine absolute times move with it, ratios
much less.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from phalanx.bench.first_fit import NO_NODE, compiled_first_fit, first_fit_call
from phalanx.bench.placement_report import fragmented_state
from phalanx.scheduler import kernels
from phalanx.scheduler.cost import priced_domain
from phalanx.scheduler.engine import place
from phalanx.scheduler.gang import Gang, MemberRequest
from phalanx.scheduler.placement import Placement
from phalanx.scheduler.state import ClusterState

DEFAULT_NODES = (1_000, 10_000, 50_000)
DEFAULT_MEMBERS = (1, 8, 32, 128, 512)
DEFAULT_GPUS = 8
DEFAULT_REPEATS = 21
MS_PER_S = 1e3


def median_s(
    fn: Callable[[], object], repeats: int, between: Callable[[object], None] | None = None
) -> float:
    """Median wall seconds of ``repeats`` calls after one warm-up call; ``between``, untimed,
    gets each call's result."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
        if between is not None:
            between(result)
    return statistics.median(times)


def write_ledger(state: ClusterState) -> Callable[[object], None]:
    """Reserve and release a placement: two ledger writes that leave the state as it was."""

    def write(result: object) -> None:
        assert isinstance(result, Placement)
        state.reserve(result, 0.0)
        state.release(result.gang)

    return write


@dataclass
class Cell:
    members: int
    nodes: int
    fast_s: float | None
    """None when the gang does not fit."""
    first_fit_s: float
    pricing_s: float | None
    written_s: float | None = None
    """The fast path with the ledger written between calls."""

    @property
    def ratio(self) -> float | None:
        return self.fast_s / self.first_fit_s if self.fast_s is not None else None


def measure(state: ClusterState, members: int, gpus: int, repeats: int) -> Cell:
    gang = Gang.uniform(f"g{members}x{gpus}", members, MemberRequest(gpus=gpus))
    baseline = first_fit_call(state, gang)
    nodes_of, _ = baseline()  # type: ignore[misc]
    first_fit_s = median_s(baseline, repeats)
    result = place(gang, state)
    if not isinstance(result, Placement):
        assert (nodes_of == NO_NODE).any(), "first fit placed what the fast path could not"
        return Cell(members, state.compiled.n_nodes, None, first_fit_s, None)
    fast_s = median_s(lambda: place(gang, state), repeats)
    written_s = median_s(lambda: place(gang, state), repeats, write_ledger(state))
    pricing_s = median_s(lambda: priced_domain(state.compiled, gang, result.members), repeats)
    return Cell(members, state.compiled.n_nodes, fast_s, first_fit_s, pricing_s, written_s)


def row(cell: Cell) -> str:
    base = f"{cell.first_fit_s * MS_PER_S:.3f} ms"
    if cell.fast_s is None or cell.pricing_s is None:
        return f"| {cell.members} | {cell.nodes:,} | does not fit | {base} | | | |"
    share = cell.pricing_s / cell.fast_s
    written = f"{cell.written_s * MS_PER_S:.3f} ms" if cell.written_s is not None else ""
    return (
        f"| {cell.members} | {cell.nodes:,} | {cell.fast_s * MS_PER_S:.3f} ms | {base} | "
        f"{cell.ratio:.1f}x | {written} | {cell.pricing_s * MS_PER_S:.3f} ms ({share:.0%}) |"
    )


def load_text() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} on {os.cpu_count()} CPUs"


def parse_ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(","))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=parse_ints, default=DEFAULT_NODES)
    parser.add_argument("--members", type=parse_ints, default=DEFAULT_MEMBERS)
    parser.add_argument("--gpus", type=int, default=DEFAULT_GPUS)
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    args = parser.parse_args(argv)
    kernels.warm_up()
    print(f"before: {load_text()}")
    print(
        f"\nmembers x {args.gpus} GPUs, half-full fragmented DGX H100 clusters; medians of "
        f"{args.repeats} runs; first fit = {compiled_first_fit.__module__}"
    )
    print(
        "\n| members | nodes | fast path | first fit | fast / first fit "
        "| fast path, ledger written between calls | pricing (share) |"
    )
    print("|---|---|---|---|---|---|---|")
    for index, nodes in enumerate(args.nodes):
        state = fragmented_state(nodes)
        if index == 0:  # untimed: a process's first timed calls run slower than the rest
            measure(state, args.members[0], args.gpus, args.repeats)
        for members in args.members:
            print(row(measure(state, members, args.gpus, args.repeats)), flush=True)
        del state
    print(f"\nafter: {load_text()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
