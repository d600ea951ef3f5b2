"""Placement benchmarks: the fast path against a first-fit baseline in the same run.

Default run (``--benchmark-disable``): small clusters, each benchmark runs once and asserts
that the fast path places validly and never costs more than first fit. Full sizes are
``benchmark_heavy``: ``python -m pytest bench/bench_placement.py -m benchmark_heavy
--benchmark-enable``; they assert the goals on the median (one member <= 1 ms and a
128 x 8-GPU gang <= 50 ms on a half-full fragmented 10,000-node cluster).
"""

from functools import cache

import pytest
from phalanx.bench.placement_report import (
    BIG_GANG_GPUS,
    BIG_GANG_MEMBERS,
    FULL_NODES,
    PARTIAL_NODE_GANGS,
    QUICK_NODES,
    SCALING_NODES,
    big_gang,
    first_fit,
    fragmented_state,
    single_member_gang,
)
from phalanx.scheduler.engine import place
from phalanx.scheduler.gang import Gang, MemberRequest
from phalanx.scheduler.placement import Placement
from phalanx.scheduler.state import ClusterState

from tests.placement_helpers import assert_valid_placement

ONE_MEMBER_GOAL_MS = 1.0
BIG_GANG_GOAL_MS = 50.0
MS_PER_S = 1000.0
SOLVERS = {"fast": place, "first-fit": first_fit}


@cache
def state_of(nodes: int) -> ClusterState:
    return fragmented_state(nodes)


def check(benchmark, solver, gang, state, goal_ms=None):
    result = benchmark(SOLVERS[solver], gang, state)
    assert isinstance(result, Placement), result
    assert_valid_placement(gang, result, state)
    if solver == "fast":
        baseline = first_fit(gang, state)
        assert result.cost.total <= baseline.cost.total + 1e-9
        if goal_ms is not None and benchmark.stats:
            assert benchmark.stats.stats.median * MS_PER_S <= goal_ms
    return result


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("gpus", [1, 2, 4, 8])
def test_one_member_small(benchmark, solver, gpus):
    benchmark.group = f"one member x {gpus} GPUs, {QUICK_NODES} nodes"
    check(benchmark, solver, single_member_gang(gpus), state_of(QUICK_NODES))


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize(("members", "gpus"), PARTIAL_NODE_GANGS)
def test_partial_node_gang_small(benchmark, solver, members, gpus):
    benchmark.group = f"{members} x {gpus} GPUs, {QUICK_NODES} nodes"
    gang = Gang.uniform(f"g{members}x{gpus}", members, MemberRequest(gpus=gpus))
    check(benchmark, solver, gang, state_of(QUICK_NODES))


@pytest.mark.parametrize("solver", SOLVERS)
def test_big_gang_small(benchmark, solver):
    benchmark.group = f"{BIG_GANG_MEMBERS} x {BIG_GANG_GPUS} GPUs, {QUICK_NODES} nodes"
    check(benchmark, solver, big_gang(), state_of(QUICK_NODES))


@pytest.mark.benchmark_heavy
@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("gpus", [1, 2, 4, 8])
def test_one_member_full(benchmark, solver, gpus):
    benchmark.group = f"one member x {gpus} GPUs, {FULL_NODES} nodes"
    check(benchmark, solver, single_member_gang(gpus), state_of(FULL_NODES), ONE_MEMBER_GOAL_MS)


@pytest.mark.benchmark_heavy
@pytest.mark.parametrize("solver", SOLVERS)
def test_big_gang_full(benchmark, solver):
    benchmark.group = f"{BIG_GANG_MEMBERS} x {BIG_GANG_GPUS} GPUs, {FULL_NODES} nodes"
    check(benchmark, solver, big_gang(), state_of(FULL_NODES), BIG_GANG_GOAL_MS)


@pytest.mark.benchmark_heavy
@pytest.mark.parametrize("nodes", SCALING_NODES)
def test_big_gang_scaling(benchmark, nodes):
    benchmark.group = "scaling: 128 x 8 GPUs, fast path"
    check(benchmark, "fast", big_gang(), state_of(nodes))
