"""The numba kernels agree with their numpy twins; the GPU-choice tables agree with direct
search and with the shared cost function; the fewest-children split is what its greedy rule
says."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from phalanx.bench.placement_report import (
    fragmented_state,
    kernel_rows,
    numpy_domain_totals,
    numpy_fractional_member_capacity,
    numpy_whole_member_capacity,
)
from phalanx.scheduler.cluster_index import cluster_index
from phalanx.scheduler.cost import placement_cost
from phalanx.scheduler.gang import Gang, MemberRequest
from phalanx.scheduler.gpu_choice import best_set, choose_whole_gpus, gpus_of, shape_table
from phalanx.scheduler.kernels import (
    domain_totals,
    fractional_member_capacity,
    nvlink_unit_capacity,
    popcount,
    whole_member_capacity,
)
from phalanx.scheduler.placement import MemberPlacement
from phalanx.scheduler.spread import fewest_children
from phalanx.scheduler.state import ClusterState
from phalanx.topology.presets import cluster_preset

from tests.placement_helpers import occupy

N = 40


def arrays(dtype, low, high, shape=N):
    return hnp.arrays(dtype, shape, elements=st.integers(low, high))


@settings(max_examples=50, deadline=None)
@given(
    eligible=hnp.arrays(np.bool_, N),
    free=arrays(np.int32, 0, 8),
    cpu=arrays(np.int64, 0, 10**6),
    mem=arrays(np.int64, 0, 10**6),
    gpus=st.integers(0, 8),
    cpu_milli=st.integers(0, 5000),
    memory_mib=st.integers(0, 5000),
)
def test_whole_member_capacity_matches_numpy(eligible, free, cpu, mem, gpus, cpu_milli, memory_mib):
    args = (eligible, free, cpu, mem, gpus, cpu_milli, memory_mib, 1 << 20)
    assert np.array_equal(whole_member_capacity(*args), numpy_whole_member_capacity(*args))


@settings(max_examples=50, deadline=None)
@given(
    eligible=hnp.arrays(np.bool_, N),
    used=arrays(np.int32, 0, 1000, (N, 8)),
    usable=hnp.arrays(np.bool_, (N, 8)),
    cpu=arrays(np.int64, 0, 10**6),
    milli=st.integers(1, 999),
    cpu_milli=st.integers(0, 5000),
)
def test_fractional_member_capacity_matches_numpy(eligible, used, usable, cpu, milli, cpu_milli):
    args = (eligible, used, usable, cpu, cpu, milli, cpu_milli, 0)
    assert np.array_equal(
        fractional_member_capacity(*args), numpy_fractional_member_capacity(*args)
    )


def test_domain_totals_match_numpy_on_a_real_tree():
    compiled = cluster_preset("superpod-h100:1000").compile()
    values = np.random.default_rng(0).integers(0, 9, compiled.n_nodes)
    n_domains = len(compiled.domain_names)
    expected = numpy_domain_totals(compiled.node_domain, values, n_domains)
    assert np.array_equal(domain_totals(compiled.node_domain, values, n_domains), expected)
    root = compiled.level_domain_range[-1][0]
    assert expected[root] == values.sum()


@given(mask=st.integers(0, 2**64 - 1))
def test_popcount(mask):
    assert popcount(np.uint64(mask)) == mask.bit_count()


def test_nvlink_unit_capacity_counts_whole_groups_per_domain():
    member_cap = np.array([4, 4, 1], dtype=np.int64)
    free = np.array([0b1111, 0b0111, 0b1111], dtype=np.uint64)
    pairs = np.array([[0b0011, 0b1100]] * 3, dtype=np.uint64)
    # groups of 2 members x 1 GPU inside one bridge pair
    assert nvlink_unit_capacity(member_cap, free, pairs, 2, 2).tolist() == [2, 1, 0]


def brute_force_best(shape, free_mask, k):
    """Lowest worst link, then lowest penalty, over every k-set (from the cost terms)."""
    best = None
    for combo in itertools.combinations(gpus_of(free_mask), k):
        _, worst, penalty = best_set(shape, sum(1 << g for g in combo), k)
        key = (worst, penalty)
        best = key if best is None or key < best else best
    return best


@pytest.mark.parametrize("preset", ["dgx-h100:1", "l40s-cluster:1", "dgx-a100:1", "nvl72:1"])
def test_choice_table_agrees_with_direct_search(preset):
    compiled = cluster_preset(preset).compile()
    index = cluster_index(compiled)
    shape = index.choice_shapes[index.choice_shape[0]]
    for k in range(1, shape.gpu_count + 1):
        best, worst, penalty = shape_table(shape, k)
        for mask in range(1, 1 << shape.gpu_count):
            if mask.bit_count() < k:
                assert best[mask] == 0
                continue
            gpus, w, p = best_set(shape, mask, k)
            assert gpus_of(int(best[mask])) == list(gpus)
            assert (worst[mask], penalty[mask]) == pytest.approx((w, p))


@pytest.mark.parametrize("preset", ["l40s-cluster:1", "dgx-h100:1"])
def test_single_member_choice_minimises_the_shared_cost(preset):
    """For one member on one node, the chosen set has the lowest placement_cost among the
    sets with the lowest worst link."""
    rng = np.random.default_rng(1)
    for _ in range(20):
        state = ClusterState(cluster_preset(preset).compile())
        taken = sorted(rng.choice(8, size=int(rng.integers(0, 6)), replace=False).tolist())
        if taken:
            occupy(state, 0, taken)
        c = state.compiled
        free = int(c.free_gpu_mask[0])
        index = cluster_index(c)
        for k in range(1, free.bit_count() + 1):
            gang = Gang.uniform("g", 1, MemberRequest(gpus=k))
            chosen = choose_whole_gpus(index, int(index.choice_shape[0]), free, k)

            def cost(gpus, gang=gang, c=c):
                member = MemberPlacement("g-0", c.node_names[0], 0, tuple(gpus), 1000)
                return placement_cost(c, gang, [member]).total

            options = list(itertools.combinations(gpus_of(free), k))
            best = min(cost(o) for o in options)
            assert cost(chosen) == pytest.approx(best)


def reference_fewest(caps, busy, ids, need):
    order = sorted(range(len(caps)), key=lambda p: (-caps[p], busy[p], ids[p]))
    picks, remaining = [], need
    while remaining > 0:
        fitting = [p for p in order if caps[p] >= remaining]
        if fitting:
            pick = min(fitting, key=lambda p: (caps[p], busy[p], ids[p]))
            return [*picks, (pick, remaining)]
        pick = order.pop(0)
        picks.append((pick, caps[pick]))
        remaining -= caps[pick]
    return picks


@settings(max_examples=200, deadline=None)
@given(
    caps=st.lists(st.integers(0, 6), min_size=1, max_size=30),
    busy_seed=st.integers(0, 1000),
    data=st.data(),
)
def test_fewest_children_follows_its_greedy_rule(caps, busy_seed, data):
    total = sum(caps)
    if total == 0:
        return
    need = data.draw(st.integers(1, total))
    busy = np.random.default_rng(busy_seed).integers(0, 4, len(caps))
    ids = np.arange(len(caps))
    got = fewest_children(np.array(caps), busy, ids, need)
    assert got == reference_fewest(caps, busy.tolist(), ids.tolist(), need)
    assert sum(count for _, count in got) == need


def test_every_kernel_matches_its_numpy_twin_on_a_busy_cluster():
    rows = kernel_rows(fragmented_state(256), repeats=1)
    assert len(rows) == 5
