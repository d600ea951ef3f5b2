"""GpuClustering's per-node shape census follows the ledger incrementally: after any mix of
reservations, releases and re-reservations under the same gang name, with scoring at arbitrary
points in between, it holds the same counts as a recount from scratch, and the scorer ranks
nodes as a scorer bound afresh would."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from phalanx.policies.scoring.fgd_baselines import GpuClusteringScorer, NodeShapeCensus, shape_index
from phalanx.scheduler.gang import MemberRequest
from phalanx.scheduler.placement import CostBreakdown, MemberPlacement, Placement
from phalanx.scheduler.state import ClusterState
from phalanx.topology.model import MILLI_PER_GPU, Cluster, FabricLevel, Gpu, Node

N_NODES = 4
GPUS_PER_NODE = 4
GANG_NAMES = ("a", "b", "c", "d", "e")
SHARE_MILLI = (250, 500)
SEED = 7

# One step: (gang name, node, GPUs wanted (0 for a share, -1 for cpu only), release instead
# of reserving, score after the step).
steps = st.lists(
    st.tuples(
        st.sampled_from(GANG_NAMES),
        st.integers(0, N_NODES - 1),
        st.integers(-1, GPUS_PER_NODE),
        st.booleans(),
        st.booleans(),
    ),
    max_size=40,
)


def fresh_state() -> ClusterState:
    nodes = [
        Node(
            f"n{i}",
            tuple(Gpu(g, f"n{i}-{g}", "A", 16_000) for g in range(GPUS_PER_NODE)),
            64_000,
            256_000,
            domains={"rack": "r"},
        )
        for i in range(N_NODES)
    ]
    return ClusterState(Cluster("census", nodes, [FabricLevel("rack", 10.0)]).compile())


def member_on(state: ClusterState, gang: str, node: int, gpus: int) -> MemberPlacement | None:
    """A member taking ``gpus`` whole GPUs (0: a share, -1: cpu only) of ``node``, or None
    where they are not free."""
    used = state.compiled.gpu_used_milli[node]
    if gpus < 0:
        return MemberPlacement(f"{gang}-0", f"n{node}", node, (), 0, cpu_milli=1000)
    if gpus == 0:
        milli = SHARE_MILLI[node % len(SHARE_MILLI)]
        fits = np.flatnonzero(MILLI_PER_GPU - used >= milli)
        chosen, per_gpu = fits[:1], milli
    else:
        fits = np.flatnonzero(used == 0)
        chosen, per_gpu = fits[:gpus], MILLI_PER_GPU
    if len(chosen) < max(gpus, 1):
        return None
    return MemberPlacement(f"{gang}-0", f"n{node}", node, tuple(int(g) for g in chosen), per_gpu)


def recount(state: ClusterState) -> np.ndarray:
    counts = np.zeros((N_NODES, GPUS_PER_NODE + 1), dtype=np.int64)
    for holding in state.holdings.values():
        for m in holding.placement.members:
            shape = shape_index(len(m.gpus), m.gpu_milli)
            if shape is not None:
                counts[m.node_index, shape] += 1
    return counts


def apply(state: ClusterState, gang: str, node: int, gpus: int, release: bool) -> None:
    if gang in state.holdings:
        state.release(gang)
    if release:
        return
    member = member_on(state, gang, node, gpus)
    if member is not None:
        state.reserve(Placement(gang, (member,), "rack", "r", CostBreakdown()), 0.0)


@settings(max_examples=150, deadline=None)
@given(steps)
def test_census_matches_a_recount_after_any_ledger_history(history) -> None:
    state = fresh_state()
    census = NodeShapeCensus(state.compiled)
    for gang, node, gpus, release, sync in history:
        apply(state, gang, node, gpus, release)
        if sync:
            census.sync(state.holdings)
    census.sync(state.holdings)
    expected = recount(state)
    assert np.array_equal(census.counts, expected)
    assert np.array_equal(census.distinct, np.count_nonzero(expected, axis=1))


@settings(max_examples=100, deadline=None)
@given(steps, st.sampled_from([MemberRequest(gpus=1), MemberRequest(gpu_milli=250)]))
def test_incremental_scores_equal_scores_from_scratch(history, request) -> None:
    state = fresh_state()
    kept = GpuClusteringScorer(seed=SEED)
    kept.bind_state(state)
    nodes = np.arange(N_NODES)
    for gang, node, gpus, release, score_now in history:
        apply(state, gang, node, gpus, release)
        if score_now:
            kept.score(state.compiled, request, nodes)
    scratch = GpuClusteringScorer(seed=SEED)
    scratch.bind_state(state)
    assert np.array_equal(
        kept.score(state.compiled, request, nodes), scratch.score(state.compiled, request, nodes)
    )


def test_rebinding_to_a_copy_counts_the_copy() -> None:
    state = fresh_state()
    apply(state, "a", 0, 1, release=False)
    scorer = GpuClusteringScorer(seed=SEED)
    scorer.bind_state(state)
    one_gpu = MemberRequest(gpus=1)
    nodes = np.arange(N_NODES)
    before = scorer.score(state.compiled, one_gpu, nodes)
    what_if = state.copy()
    what_if.release("a")
    scorer.bind_state(what_if)
    assert np.floor(scorer.score(what_if.compiled, one_gpu, nodes))[0] < np.floor(before[0])
