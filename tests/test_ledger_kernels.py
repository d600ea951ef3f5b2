"""The compiled ledger updates against their numpy reference: random sequences of allocations
and releases, valid or not, leave every mutable array identical and raise the same errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phalanx.topology.compiled import CapacityError, CompiledCluster
from phalanx.topology.model import MILLI_PER_GPU
from phalanx.topology.presets import cluster_preset

from tests.topology_strategies import clusters

OPERATION = st.tuples(
    st.sampled_from(("take", "give")),
    st.integers(-1, 8),  # node (one past the end is refused)
    st.lists(st.integers(-1, 8), max_size=4),  # GPU indices, repeats and strays included
    st.sampled_from((0, 1, 250, 500, MILLI_PER_GPU, MILLI_PER_GPU + 1)),
    st.sampled_from((0, 1000, 10**9)),
    st.sampled_from((0, 1024, 10**9)),
)


def outcome(update, *args):
    try:
        update(*args)
    except CapacityError as error:
        return str(error)
    return None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cluster=clusters(max_nodes=6), operations=st.lists(OPERATION, max_size=30))
def test_compiled_updates_match_the_reference(cluster, operations):
    compiled = cluster.compile()
    reference = compiled.copy()
    assert compiled.mutable_state_bytes() == reference.mutable_state_bytes()
    for kind, *args in operations:
        fast = compiled.allocate if kind == "take" else compiled.release
        slow = reference.reference_allocate if kind == "take" else reference.reference_release
        assert outcome(fast, *args) == outcome(slow, *args)
        assert compiled.mutable_state_bytes() == reference.mutable_state_bytes()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cluster=clusters(max_nodes=8))
def test_build_refreshes_every_node_as_the_reference(cluster):
    compiled = cluster.compile()
    rebuilt = compiled.copy()
    rebuilt.free_gpu_mask[:] = 0
    rebuilt.free_gpu_count[:] = 0
    rebuilt.domain_free_gpus[:] = 0
    for node in range(rebuilt.n_nodes):
        rebuilt._refresh_node_mask(node)
    assert compiled.mutable_state_bytes() == rebuilt.mutable_state_bytes()


def test_a_figure_beyond_int64_is_refused_by_the_reference():
    compiled = CompiledCluster.build(cluster_preset("dgx-h100:2"))
    before = compiled.mutable_state_bytes()
    with pytest.raises(CapacityError):
        compiled.allocate(0, [0], MILLI_PER_GPU, cpu_milli=2**70)
    assert compiled.mutable_state_bytes() == before
    assert np.all(compiled.gpu_used_milli == 0)
