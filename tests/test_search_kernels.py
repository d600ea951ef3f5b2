"""The search's compiled kernels against the numpy references they replaced: the one-pass node
ranking (the same nodes in the same order, cost then index, with many equal costs, one or two
member classes, any number of fitting nodes) and the fewest-children split (ties on room and
on the busy key, integer or float keys)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phalanx.bench.placement_report import fragmented_state
from phalanx.scheduler.cluster_index import cluster_index
from phalanx.scheduler.cost import FRAGMENTATION_WEIGHT
from phalanx.scheduler.gpu_choice import stacked_tables
from phalanx.scheduler.kernels import best_fitting_nodes, single_node_costs
from phalanx.scheduler.spread import (
    fewest_children,
    fewest_children_kernel,
    reference_fewest_children,
    smallest,
)

NODES = 64
STATE = fragmented_state(NODES)


def reference_ranking(node_units, units, count, demand_milli, cost_args) -> np.ndarray:
    """Fitting nodes priced one by one, the ``count`` smallest kept and sorted."""
    fits = np.all(node_units >= units[:, None], axis=0)
    nodes = np.flatnonzero(fits)
    proxy = single_node_costs(nodes, demand_milli, *cost_args)
    keep = smallest(proxy, count)
    order = np.lexsort((nodes[keep], proxy[keep], proxy[keep]))
    return nodes[keep[order]]


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    classes=st.integers(1, 2),
    gpus=st.sampled_from((0, 1, 2, 4, 8)),
    count=st.integers(1, 20),
    intensity=st.sampled_from((0.0, 1.0)),
)
def test_best_fitting_nodes_is_the_sorted_reference(seed, classes, gpus, count, intensity):
    rng = np.random.default_rng(seed)
    c = STATE.compiled
    index = cluster_index(c)
    node_units = rng.integers(0, 3, size=(classes, NODES)).astype(np.int64)
    units = rng.integers(1, 3, size=classes).astype(np.int64)
    no_tables = (np.zeros((1, 1)), np.zeros((1, 1)), np.zeros(1, dtype=bool))
    tables = stacked_tables(index, gpus) if gpus else no_tables
    cost_args = (
        c.gpu_used_milli,
        c.gpu_usable,
        FRAGMENTATION_WEIGHT,
        index.choice_shape,
        c.free_gpu_mask,
        *tables,
        intensity,
    )
    demand_milli = gpus * 1000
    ranked, fitting, saw_nan = best_fitting_nodes(
        node_units, units, count, demand_milli, *cost_args
    )
    fits = np.flatnonzero(np.all(node_units >= units[:, None], axis=0))
    if saw_nan:  # the search then ranks by the reference itself
        assert np.isnan(single_node_costs(fits, demand_milli, *cost_args)).any()
        return
    assert fitting == fits.size
    want = reference_ranking(node_units, units, count, demand_milli, cost_args)
    assert ranked.tolist() == want.tolist()


@settings(max_examples=300, deadline=None)
@given(
    caps=st.lists(st.integers(0, 6), min_size=1, max_size=40),
    float_busy=st.booleans(),
    data=st.data(),
)
def test_fewest_children_is_the_reference(caps, float_busy, data):
    n = len(caps)
    caps_arr = np.array(caps, dtype=np.int64)
    floats = st.sampled_from((0.0, 0.5, 1.0, 2.25, np.nan))  # NaN: 0 x inf of unfit nodes
    busy_values = floats if float_busy else st.integers(0, 3)
    busy = np.array(data.draw(st.lists(busy_values, min_size=n, max_size=n)))
    ids = np.array(data.draw(st.permutations(range(100, 100 + n))), dtype=np.int64)
    need = data.draw(st.integers(0, int(caps_arr.sum())))
    if need == 0 or not caps_arr.sum():
        return
    assert fewest_children(caps_arr, busy, ids, need) == reference_fewest_children(
        caps_arr, busy, ids, need
    )


def test_fewest_children_refuses_what_the_children_cannot_hold():
    caps = np.array([2, 2, 1], dtype=np.int64)
    busy = np.zeros(3)
    ids = np.arange(3, dtype=np.int64)
    assert not fewest_children_kernel(caps, busy, ids, 6)[2]
    with pytest.raises(IndexError):
        fewest_children(caps, busy, ids, 6)
