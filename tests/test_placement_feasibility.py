"""Never fits (on the empty cluster, proven from capacities) and fragmented (free GPUs enough in
total, scattered over nodes): the reasons the engine and the extender share."""

from __future__ import annotations

import numpy as np
import pytest
from phalanx.scheduler.engine import place
from phalanx.scheduler.feasibility import empty_arrays, fragmentation, never_fits
from phalanx.scheduler.gang import Gang, MemberRequest
from phalanx.scheduler.placement import Placement
from phalanx.scheduler.reasons import NEVER_FITS_CONSTRAINTS, Reason
from phalanx.scheduler.state import ClusterState
from phalanx.topology.presets import cluster_preset

from tests.placement_helpers import fill_nodes, occupy


@pytest.fixture(scope="module")
def superpod():
    return cluster_preset("superpod-h100:64")


@pytest.fixture
def state(superpod) -> ClusterState:
    return ClusterState(superpod.compile())


@pytest.mark.parametrize(
    ("gang", "constraint", "words"),
    [
        (Gang.uniform("g", 300, MemberRequest(gpus=8)), "capacity", "needs 300 free nodes"),
        (Gang.uniform("g", 1000, MemberRequest(gpus=1)), "capacity", "room for 512"),
        (
            Gang.uniform("g", 40, MemberRequest(gpus=8), required_level="su"),
            "required_level",
            "the largest su has 32 free nodes",
        ),
        (
            Gang.uniform("g", 65, MemberRequest(gpus=2, cpu_milli=150_000)),
            "cpu_memory",
            "room for 64",
        ),
        (
            Gang.uniform("g", 1, MemberRequest(gpus=1, node_selector={"pool": "none"})),
            "node_selector",
            "pool=none",
        ),
    ],
)
def test_never_fits_names_what_even_the_empty_cluster_lacks(superpod, gang, constraint, words):
    verdict = never_fits(gang, superpod.compile())
    assert verdict is not None and verdict.constraint == constraint, verdict
    assert words in verdict.reason
    assert verdict.constraint in NEVER_FITS_CONSTRAINTS


def test_never_fits_holds_whatever_the_load(state):
    fill_nodes(state, range(64))
    for gang in (
        Gang.uniform("a", 64, MemberRequest(gpus=8)),
        Gang.uniform("b", 32, MemberRequest(gpus=8), required_level="su"),
        Gang.uniform("c", 8, MemberRequest(gpus=2), nvlink_group=4),
    ):
        assert never_fits(gang, state.compiled) is None, gang.name
        assert not isinstance(place(gang, state), Placement), "full: none of them fits now"


def test_a_quorum_that_fits_is_not_never(superpod):
    gang = Gang.uniform("q", 100, MemberRequest(gpus=8), min_members=64)
    assert never_fits(gang, superpod.compile()) is None


def test_empty_arrays_are_those_of_a_fresh_cluster(state):
    fill_nodes(state, range(10))
    fresh = ClusterState(state.compiled.cluster.compile()).compiled
    empty = empty_arrays(state.compiled)
    assert np.array_equal(empty.free_gpu_count, fresh.free_gpu_count)
    assert np.array_equal(empty.free_gpu_mask, fresh.free_gpu_mask)
    assert np.array_equal(empty.gpu_used_milli, fresh.gpu_used_milli)
    assert np.array_equal(empty.cpu_free_milli, fresh.cpu_free_milli)


def test_free_gpus_scattered_over_nodes_are_fragmented_for_the_engine_too(state):
    for node in range(64):
        occupy(state, node, (0, 1, 2, 3))
    gang = Gang.uniform("g", 2, MemberRequest(gpus=8))
    result = place(gang, state)
    assert not isinstance(result, Placement)
    assert result.constraint == Reason.FRAGMENTED
    assert result.reason.startswith("fragmented: 256 GPUs are free on the nodes it may use")
    assert fragmentation(gang, state.compiled).reason == result.reason


def test_too_few_free_gpus_in_total_is_capacity_not_fragmented(state):
    fill_nodes(state, range(62))
    occupy(state, 62, (0, 1, 2, 3))
    gang = Gang.uniform("g", 2, MemberRequest(gpus=8))
    result = place(gang, state)
    assert result.constraint == Reason.CAPACITY
    assert fragmentation(gang, state.compiled) is None


def test_fractional_members_on_crowded_gpus_are_fragmented(state):
    for node in range(64):
        for gpu in range(8):
            occupy(state, node, (gpu,), gpu_milli=600)
    gang = Gang.uniform("f", 2, MemberRequest(gpu_milli=500))
    result = place(gang, state)
    assert result.constraint == Reason.FRAGMENTED
    assert "milli-GPU are free" in result.reason
