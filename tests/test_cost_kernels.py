"""The compiled cost terms against their Python reference: bit-identical totals and domains on
random clusters, prior usage and member sets (any node, any GPU subset, whole GPUs, shares and
CPU-only members), since a last-bit difference could flip a tie between candidates."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phalanx.scheduler.cost import (
    lowest_common_domain,
    placement_cost,
    reference_lowest_common_domain,
    reference_placement_cost,
)
from phalanx.scheduler.gang import Gang, MemberRequest
from phalanx.scheduler.placement import MemberPlacement
from phalanx.topology.model import MILLI_PER_GPU
from phalanx.topology.presets import cluster_preset

from tests.topology_strategies import clusters

SHARES = (100, 250, 500, 700)


@st.composite
def priced(draw: st.DrawFn):
    """A compiled cluster with random prior usage, and members placed anywhere on it."""
    compiled = draw(clusters(max_nodes=8)).compile()
    used = compiled.gpu_used_milli
    for node in range(compiled.n_nodes):
        for g in range(int(compiled.gpu_count[node])):
            if compiled.gpu_usable[node, g]:
                used[node, g] = draw(st.sampled_from((0, 0, 250, 500, MILLI_PER_GPU)))
    members = []
    for rank in range(draw(st.integers(1, 6))):
        node = draw(st.integers(0, compiled.n_nodes - 1))
        usable = np.flatnonzero(compiled.gpu_usable[node]).tolist()  # placements use no other
        kind = draw(st.sampled_from(("whole", "share", "cpu")))
        if kind == "whole" and usable:
            k = draw(st.integers(1, len(usable)))
            gpus = tuple(sorted(draw(st.permutations(usable))[:k]))
            milli = MILLI_PER_GPU
        elif kind == "share" and usable:
            gpus, milli = (draw(st.sampled_from(usable)),), draw(st.sampled_from(SHARES))
        else:
            gpus, milli = (), 0
        members.append(
            MemberPlacement(f"m{rank}", compiled.node_names[node], node, gpus, milli, rank=rank)
        )
    intensity = draw(st.sampled_from((0.0, 0.2, 1.0)))
    gang = Gang.uniform("g", len(members), MemberRequest(gpus=1), comm_intensity=intensity)
    return compiled, gang, members


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=priced())
def test_compiled_cost_is_the_reference_bit_for_bit(case):
    compiled, gang, members = case
    assert placement_cost(compiled, gang, members) == reference_placement_cost(
        compiled, gang, members
    )
    nodes = [m.node_index for m in members]
    assert lowest_common_domain(compiled, nodes) == reference_lowest_common_domain(compiled, nodes)


def test_large_gangs_on_a_fabric_match_the_reference():
    """Many members over scalable units: rail sets, NUMA splits and shared nodes together."""
    compiled = cluster_preset("superpod-h100:64").compile()
    rng = np.random.default_rng(3)
    gang = Gang.uniform("g", 64, MemberRequest(gpus=2))
    for _ in range(50):
        members = []
        for rank in range(int(rng.integers(2, 64))):
            node = int(rng.integers(compiled.n_nodes))
            gpus = tuple(sorted(rng.choice(8, size=int(rng.integers(1, 9)), replace=False)))
            members.append(
                MemberPlacement(f"m{rank}", "", node, tuple(int(g) for g in gpus), 1000, rank=rank)
            )
        assert placement_cost(compiled, gang, members) == reference_placement_cost(
            compiled, gang, members
        )


def test_rail_ids_beyond_the_bitmask_take_the_reference():
    """Rail ids of 62 and more do not fit the kernels' rail bitmasks: the Python reference
    prices such clusters (and still tells rails apart)."""
    compiled = cluster_preset("superpod-h100:64").compile()
    compiled.gpu_rail = compiled.gpu_rail + 100
    gang = Gang.uniform("g", 2, MemberRequest(gpus=4))
    members = [
        MemberPlacement("m0", "", 0, (0, 1, 2, 3), 1000, rank=0),
        MemberPlacement("m1", "", 40, (4, 5, 6, 7), 1000, rank=1),
    ]
    cost = placement_cost(compiled, gang, members)
    assert cost == reference_placement_cost(compiled, gang, members)
    assert cost.misalignment > 0
