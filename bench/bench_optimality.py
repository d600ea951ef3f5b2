"""The fast path's optimality gap against CP-SAT, as a benchmark.

Default run (``--benchmark-disable``): the first ``SUBSET`` instances of
:mod:`bench.instances` with a short CP-SAT limit, run once. Asserts the invariants (every
answer valid, the fast path never places a gang CP-SAT proves unplaceable, the exact path
places whenever the fast path does) and the goal: a mean gap within 3%.

Full run: ``python -m pytest bench/bench_optimality.py -m benchmark_heavy --benchmark-enable``
runs all 200 instances with ``FULL_TIME_LIMIT_S`` (``python -m phalanx.bench.optimality`` prints the
same measurement as a table and writes it as JSON).
"""

import pytest
from phalanx.bench.instances import DEFAULT_INSTANCES
from phalanx.bench.optimality import GAP_TARGET, InstanceRecord, run, summarise

SUBSET = 20
SUBSET_TIME_LIMIT_S = 1.0
FULL_TIME_LIMIT_S = 5.0
MOSTLY_PROVEN = 0.8
"""Share of the placeable full-run instances CP-SAT must prove optimal within the limit."""


def check_invariants(records: list[InstanceRecord]) -> dict:
    summary = summarise(records)
    broken = {r.name: r.violations for r in records if r.violations}
    assert not broken, broken
    assert summary["fast_places_proven_infeasible"] == 0
    assert all(r.exact_members >= r.fast_members for r in records)
    return summary


def test_optimality_gap_on_a_subset(benchmark):
    records = benchmark.pedantic(run, args=(SUBSET, SUBSET_TIME_LIMIT_S), rounds=1, iterations=1)
    summary = check_invariants(records)
    assert summary["compared"] >= SUBSET // 2
    assert summary["mean_gap"] <= GAP_TARGET, summary["largest_gaps"]


@pytest.mark.benchmark_heavy
def test_optimality_gap_on_every_instance(benchmark):
    records = benchmark.pedantic(
        run, args=(DEFAULT_INSTANCES, FULL_TIME_LIMIT_S), rounds=1, iterations=1
    )
    summary = check_invariants(records)
    assert summary["proven_optimal"] >= MOSTLY_PROVEN * summary["placed"]
    assert summary["mean_gap"] <= GAP_TARGET, summary["largest_gaps"]
