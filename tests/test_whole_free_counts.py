"""Whole free nodes per room class, kept up to date with the ledger
(policies/scoring/whole_free_counts.py): after any allocations and releases, the kept counts
and the domain room term read from them equal a fresh count and the numpy reference."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phalanx.policies.scoring.domain_room import (
    domain_room_share,
    domain_room_share_reference,
    room_classes,
)
from phalanx.policies.scoring.whole_free_counts import count_whole, whole_free_counts
from phalanx.scheduler.state import ClusterState
from phalanx.topology.compiled import CHANGE_LOG_MIN
from phalanx.topology.presets import cluster_preset

CLUSTERS = ("dgx-h100:64", "gb200-nvl72:144")


def _kept(compiled):
    classes = room_classes(compiled)
    return whole_free_counts(compiled, classes.node_class, classes.class_domains.shape[0])


def _assert_current(compiled) -> None:
    classes = room_classes(compiled)
    counts = _kept(compiled)
    whole, per_class = count_whole(
        compiled.free_gpu_count,
        compiled.gpu_count,
        classes.node_class,
        classes.class_domains.shape[0],
    )
    assert np.array_equal(counts.whole, whole) and np.array_equal(counts.per_class, per_class)
    nodes = np.arange(compiled.n_nodes)
    assert np.array_equal(
        domain_room_share(compiled, nodes), domain_room_share_reference(compiled, nodes)
    )


steps = st.lists(
    st.tuples(st.integers(0, 10**6), st.integers(1, 8), st.booleans()), min_size=1, max_size=40
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=st.sampled_from(CLUSTERS), moves=steps)
def test_kept_counts_follow_allocations_and_releases(spec, moves):
    compiled = cluster_preset(spec).compile()
    for _ in range(3):  # kept from the third question on
        _assert_current(compiled)
    held: list[tuple[int, tuple[int, ...]]] = []
    for pick, gpus, release in moves:
        if release and held:
            node, taken = held.pop(pick % len(held))
            compiled.release(node, taken, 1000)
        else:
            node = pick % compiled.n_nodes
            free = compiled.free_gpus(node)
            if len(free) < gpus:
                continue
            taken = tuple(free[:gpus])
            compiled.allocate(node, taken, 1000)
            held.append((node, taken))
        _assert_current(compiled)


def test_a_restarted_change_log_and_a_what_if_copy_count_afresh():
    compiled = cluster_preset("dgx-h100:64").compile()
    for _ in range(3):
        _assert_current(compiled)
    for _ in range(CHANGE_LOG_MIN // 2 + 1):  # past the log's length: it starts over
        compiled.allocate(5, (0,), 1000)
        compiled.release(5, (0,), 1000)
    compiled.allocate(6, tuple(range(8)), 1000)
    _assert_current(compiled)

    state = ClusterState(compiled)
    what_if = state.without_nodes(np.arange(10))
    for _ in range(4):
        _assert_current(what_if.compiled)
    _assert_current(compiled)
    assert int(_kept(what_if.compiled).per_class.sum()) < int(_kept(compiled).per_class.sum())
