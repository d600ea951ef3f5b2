"""Placement-engine figures: medians of the fast path against a first-fit baseline measured in
the same run, the node-count scaling curve and the numba-versus-numpy kernel timings.

Two first fits: the *timing* baseline is the minimal compiled pass of :mod:`bench.first_fit`
(no cost function), and :func:`first_fit` below, priced with the shared cost function, is the
*quality* baseline whose cost the fast path must not exceed.

Run ``python -m phalanx.bench.placement_report`` (``--quick`` for small sizes); the README's figures
come from it. ``bench/bench_placement.py`` runs the same scenarios under pytest-benchmark.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from phalanx.bench.first_fit import first_fit_call
from phalanx.scheduler import kernels
from phalanx.scheduler.cluster_index import cluster_index
from phalanx.scheduler.cost import FRAGMENTATION_WEIGHT, lowest_common_domain, placement_cost
from phalanx.scheduler.engine import place
from phalanx.scheduler.gang import Gang, MemberRequest
from phalanx.scheduler.gpu_choice import stacked_tables
from phalanx.scheduler.placement import (
    CostBreakdown,
    MemberPlacement,
    Placement,
    PlacementResult,
    Unplaceable,
)
from phalanx.scheduler.state import ClusterState
from phalanx.topology.model import MILLI_PER_GPU
from phalanx.topology.presets import cluster_preset

NODE_PRESET = "dgx-h100"
FULL_NODES = 10_000
SCALING_NODES = (1_000, 5_000, 10_000, 20_000)
QUICK_NODES = 1_024
QUICK_SCALING_NODES = (1_024, 2_048, 4_096)
BIG_GANG_MEMBERS = 128
BIG_GANG_GPUS = 8
PARTIAL_NODE_GANGS = ((16, 4), (32, 2))
"""Gangs whose members share nodes, where GPU choice and node choice show in the cost."""
WHOLLY_USED_SHARE = 0.25
WHOLLY_FREE_SHARE = 0.25
"""The rest of the nodes are partly used (1..7 of 8 GPUs), which makes the mean 50%."""
REPEATS = 31
SEED = 7


def fragmented_state(nodes: int, seed: int = SEED) -> ClusterState:
    """A ``nodes``-node DGX H100 cluster about half full: a quarter of the nodes wholly used, a
    quarter wholly free, the rest holding random GPU subsets of 1-7 GPUs (one small job each)."""
    compiled = cluster_preset(f"{NODE_PRESET}:{nodes}").compile()
    state = ClusterState(compiled)
    rng = np.random.default_rng(seed)
    gpus_per_node = int(compiled.gpu_count.max())
    kind = rng.random(nodes)
    used = rng.integers(1, gpus_per_node, size=nodes)
    used[kind < WHOLLY_USED_SHARE] = gpus_per_node
    used[kind > 1 - WHOLLY_FREE_SHARE] = 0
    for node in np.flatnonzero(used).tolist():
        gpus = tuple(sorted(rng.choice(gpus_per_node, size=int(used[node]), replace=False)))
        member = MemberPlacement(
            f"bg-{node}-0", compiled.node_names[node], node, tuple(int(g) for g in gpus), 1000
        )
        state.assign(
            Placement(
                f"bg-{node}", (member,), "node", compiled.domain_names[node], CostBreakdown()
            ),
            0.0,
        )
    return state


def first_fit(gang: Gang, state: ClusterState) -> PlacementResult:
    """Quality baseline: each member on the first node (by index) with enough free GPUs,
    lowest free GPU indices first; no topology, no best fit. Priced with the same cost
    function (the timing baseline is :func:`bench.first_fit.compiled_first_fit`)."""
    compiled = state.compiled
    k = gang.members[0].request.gpus
    free = compiled.free_gpu_count.copy()
    members: list[MemberPlacement] = []
    taken: dict[int, int] = {}
    for rank, member in enumerate(gang.members):
        fits = np.flatnonzero(free >= k)
        if fits.size == 0:
            return Unplaceable(gang.name, "first fit: no node has room")
        node = int(fits[0])
        mask = int(compiled.free_gpu_mask[node]) & ~taken.get(node, 0)
        gpus = tuple(g for g in range(compiled.max_gpus) if mask >> g & 1)[:k]
        taken[node] = taken.get(node, 0) | sum(1 << g for g in gpus)
        free[node] -= k
        members.append(
            MemberPlacement(
                member.name, compiled.node_names[node], node, gpus, MILLI_PER_GPU, rank=rank
            )
        )
    level, domain = lowest_common_domain(compiled, [m.node_index for m in members])
    return Placement(
        gang.name,
        tuple(members),
        compiled.level_names[level],
        compiled.domain_names[domain],
        placement_cost(compiled, gang, members),
        solver="first-fit",
    )


# ---------------------------------------------------------------------------- numpy twins
# The kernels of scheduler.kernels written as numpy expressions: the baseline that shows what
# numba buys, and the reference the kernel tests compare against.
def numpy_whole_member_capacity(
    eligible,
    free_gpu_count,
    cpu_free_milli,
    memory_free_mib,
    gpus,
    cpu_milli,
    memory_mib,
    unbounded,
) -> np.ndarray:
    cap = np.full(eligible.shape, unbounded, dtype=np.int64)
    if gpus:
        cap = np.minimum(cap, free_gpu_count // gpus)
    if cpu_milli:
        cap = np.minimum(cap, cpu_free_milli // cpu_milli)
    if memory_mib:
        cap = np.minimum(cap, memory_free_mib // memory_mib)
    return np.where(eligible, cap, 0)


def numpy_fractional_member_capacity(
    eligible,
    gpu_used_milli,
    gpu_usable,
    cpu_free_milli,
    memory_free_mib,
    gpu_milli,
    cpu_milli,
    memory_mib,
) -> np.ndarray:
    shares = np.where(gpu_usable, (MILLI_PER_GPU - gpu_used_milli) // gpu_milli, 0).sum(axis=1)
    cap = shares.astype(np.int64)
    if cpu_milli:
        cap = np.minimum(cap, cpu_free_milli // cpu_milli)
    if memory_mib:
        cap = np.minimum(cap, memory_free_mib // memory_mib)
    return np.where(eligible, cap, 0)


def numpy_domain_totals(node_domain, values, n_domains) -> np.ndarray:
    weights = np.tile(values, node_domain.shape[0])
    return np.bincount(node_domain.ravel(), weights, n_domains).astype(np.int64)


def numpy_nvlink_unit_capacity(
    member_capacity, free_gpu_mask, nvlink_masks, unit_gpus, unit_members
):
    per_domain = np.bitwise_count(free_gpu_mask[:, None] & nvlink_masks) // unit_gpus
    units = np.minimum(per_domain.sum(axis=1), member_capacity // unit_members)
    return np.where(member_capacity >= unit_members, units, 0).astype(np.int64)


def numpy_single_node_costs(
    nodes,
    demand_milli,
    gpu_used_milli,
    gpu_usable,
    fragmentation_weight,
    choice_shape,
    free_gpu_mask,
    choice_worst,
    choice_penalty,
    has_table,
    worst_link_weight,
) -> np.ndarray:
    usable = gpu_usable[nodes]
    capacity = usable.sum(axis=1) * MILLI_PER_GPU
    after = np.where(usable, MILLI_PER_GPU - gpu_used_milli[nodes], 0).sum(axis=1) - demand_milli
    partly = (after > 0) & (after < capacity)
    cost = np.where(partly, fragmentation_weight * after / np.maximum(capacity, 1), 0.0)
    shape = choice_shape[nodes]
    tabled = has_table[shape]
    mask = np.where(tabled, free_gpu_mask[nodes], 0).astype(np.int64)
    choice = worst_link_weight * choice_worst[shape, mask] + choice_penalty[shape, mask]
    return cost + np.where(tabled, choice, 0.0)


def median_ms(fn: Callable[[], object], repeats: int = REPEATS) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


@dataclass
class Row:
    scenario: str
    nodes: int
    fast_ms: float
    baseline_ms: float
    fast_cost: float
    baseline_cost: float
    fast_level: str
    baseline_level: str


def measure(scenario: str, gang: Gang, state: ClusterState, repeats: int = REPEATS) -> Row:
    """Fast path and compiled first fit timed in the same run; costs of the fast path and
    of the priced first fit."""
    fast = place(gang, state)
    base = first_fit(gang, state)
    if not isinstance(fast, Placement) or not isinstance(base, Placement):
        raise RuntimeError(f"{scenario}: {fast} / {base}")
    return Row(
        scenario,
        state.compiled.n_nodes,
        median_ms(lambda: place(gang, state), repeats),
        median_ms(first_fit_call(state, gang), repeats),
        fast.cost.total,
        base.cost.total,
        fast.level,
        base.level,
    )


def single_member_gang(gpus: int) -> Gang:
    return Gang.uniform(f"one-{gpus}", 1, MemberRequest(gpus=gpus))


def big_gang() -> Gang:
    return Gang.uniform("big", BIG_GANG_MEMBERS, MemberRequest(gpus=BIG_GANG_GPUS))


def kernel_rows(state: ClusterState, repeats: int = REPEATS) -> list[tuple[str, float, float]]:
    """(kernel, numba median ms, numpy median ms) on the state's arrays."""
    c = state.compiled
    eligible = np.ones(c.n_nodes, dtype=bool)
    eligible.flags.writeable = False
    whole = (
        eligible,
        c.free_gpu_count,
        c.cpu_free_milli,
        c.memory_free_mib,
        2,
        8000,
        65536,
        1 << 20,
    )
    frac = (
        eligible,
        c.gpu_used_milli,
        c.gpu_usable,
        c.cpu_free_milli,
        c.memory_free_mib,
        250,
        1000,
        1024,
    )
    caps = kernels.whole_member_capacity(*whole)
    totals = (c.node_domain, caps, len(c.domain_names))
    index = cluster_index(c)
    nvlink = (caps, c.free_gpu_mask, index.nvlink_masks, 4, 2)
    nodes = np.flatnonzero(caps > 0)
    single = (
        nodes,
        2 * MILLI_PER_GPU,
        c.gpu_used_milli,
        c.gpu_usable,
        FRAGMENTATION_WEIGHT,
        index.choice_shape,
        c.free_gpu_mask,
        *stacked_tables(index, 2),
        1.0,
    )
    pairs = [
        (
            "member capacity, whole GPUs",
            kernels.whole_member_capacity,
            numpy_whole_member_capacity,
            whole,
        ),
        (
            "member capacity, GPU shares",
            kernels.fractional_member_capacity,
            numpy_fractional_member_capacity,
            frac,
        ),
        ("capacity of every domain", kernels.domain_totals, numpy_domain_totals, totals),
        (
            "NVLink groups per node",
            kernels.nvlink_unit_capacity,
            numpy_nvlink_unit_capacity,
            nvlink,
        ),
        (
            "single-node cost of fitting nodes",
            kernels.single_node_costs,
            numpy_single_node_costs,
            single,
        ),
    ]
    rows = []
    for name, fast, slow, args in pairs:
        assert np.allclose(fast(*args), slow(*args))
        rows.append(
            (
                name,
                median_ms(lambda f=fast, a=args: f(*a), repeats),
                median_ms(lambda f=slow, a=args: f(*a), repeats),
            )
        )
    return rows


COLD_COMPILE = (
    "import time; from phalanx.scheduler.kernels import warm_up; "
    "t = time.perf_counter(); warm_up(); print(time.perf_counter() - t)"
)


def cold_compile_s() -> float:
    """Seconds to compile every kernel from scratch (an empty numba cache, new process)."""
    with tempfile.TemporaryDirectory() as cache_dir:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
        out = subprocess.run(
            [sys.executable, "-c", COLD_COMPILE],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    return float(out.stdout.strip())


def print_scenarios(nodes: int) -> ClusterState:
    state = fragmented_state(nodes)
    rows = [measure(f"1 member x {k} GPUs", single_member_gang(k), state) for k in (1, 2, 4, 8)]
    for members, gpus in PARTIAL_NODE_GANGS:
        gang = Gang.uniform(f"g{members}x{gpus}", members, MemberRequest(gpus=gpus))
        rows.append(measure(f"{members} x {gpus} GPUs", gang, state))
    rows.append(measure(f"{BIG_GANG_MEMBERS} x {BIG_GANG_GPUS} GPUs", big_gang(), state))
    print(f"\nfast path vs first fit: half-full fragmented {nodes}-node DGX H100 cluster")
    print(f"(median of {REPEATS} runs; first fit timed compiled and unpriced, its cost priced;")
    print(" cost = placement_cost total, lower is better)")
    head = f"{'fast ms':>9s} {'first-fit ms':>13s} {'ratio':>7s}"
    print(f"  {'gang':18s} {head}   cost: fast vs first fit")
    for r in rows:
        print(
            f"  {r.scenario:18s} {r.fast_ms:9.3f} {r.baseline_ms:13.3f} "
            f"{r.fast_ms / r.baseline_ms:6.1f}x   "
            f"{r.fast_cost:6.2f} ({r.fast_level}) vs {r.baseline_cost:6.2f} ({r.baseline_level})"
        )
    return state


def print_scaling(sizes: tuple[int, ...]) -> None:
    print("\nscaling with node count (median ms; build = making the fragmented state)")
    head = ("nodes", "build s", "1 x 2 GPUs", "128 x 8", "first-fit 128x8", "128x8 per 1k nodes")
    print("  " + " ".join(f"{h:>{w}s}" for h, w in zip(head, SCALING_WIDTHS, strict=True)))
    for n in sizes:
        built = time.perf_counter()
        state = fragmented_state(n)
        build_s = time.perf_counter() - built
        one = measure("one", single_member_gang(2), state)
        big = measure("big", big_gang(), state)
        per_k = big.fast_ms / n * 1000
        values = (n, build_s, one.fast_ms, big.fast_ms, big.baseline_ms, per_k)
        formats = ("d", ".1f", ".3f", ".3f", ".3f", ".3f")
        cells = zip(values, SCALING_WIDTHS, formats, strict=True)
        print("  " + " ".join(f"{v:{w}{f}}" for v, w, f in cells))


SCALING_WIDTHS = (6, 8, 11, 9, 16, 19)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds, not minutes)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    kernels.warm_up()
    print(f"kernel start-up in this process: {time.perf_counter() - start:.2f} s")
    print(f"kernel compile from an empty numba cache: {cold_compile_s():.2f} s")
    nodes = QUICK_NODES if args.quick else FULL_NODES
    state = print_scenarios(nodes)
    print_scaling(QUICK_SCALING_NODES if args.quick else SCALING_NODES)
    print(f"\nnumba kernels vs the same computation in numpy, {nodes} nodes (median ms)")
    for name, numba_ms, numpy_ms in kernel_rows(state):
        speedup = numpy_ms / numba_ms
        print(f"  {name:34s} numba {numba_ms:7.3f}  numpy {numpy_ms:7.3f}  ({speedup:4.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
