"""A gang of one class placed with a scorer's one-pass best nodes
(:class:`~scheduler.interfaces.BestNodesScorer`) lands exactly where ranking every fitting node
by score puts it, through any sequence of allocations and releases."""

from __future__ import annotations

from unittest import mock

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from phalanx.policies.scoring.topology import TopologyScorer
from phalanx.scheduler.engine import place
from phalanx.scheduler.gang import Gang, GangSpecError, Member, MemberRequest
from phalanx.scheduler.placement import Placement
from phalanx.scheduler.search import Search
from phalanx.scheduler.state import ClusterState
from phalanx.topology.model import Cluster, Node
from phalanx.topology.presets import dgx_a100, dgx_h100, hgx_pcie_l40s, rail_fat_tree

MAKERS = {"h": dgx_h100, "a": dgx_a100, "l": hgx_pcie_l40s}
SCORER = TopologyScorer()


def _state(kinds: str, unit: int) -> ClusterState:
    nodes: list[Node] = [MAKERS[k](f"{k}{i}") for i, k in enumerate(kinds)]
    return ClusterState(Cluster("mixed", nodes, rail_fat_tree(nodes, unit)).compile())


def _outcome(gang: Gang, state: ClusterState, *, one_pass: bool):
    try:
        if one_pass:
            return place(gang, state, scorer=SCORER)
        with mock.patch.object(Search, "_best_scored_nodes", return_value=None):
            return place(gang, state, scorer=SCORER)
    except GangSpecError as exc:
        return str(exc)


def _same(gang: Gang, state: ClusterState) -> None:
    fast, full = _outcome(gang, state, one_pass=True), _outcome(gang, state, one_pass=False)
    if isinstance(full, Placement):
        assert isinstance(fast, Placement)
        assert fast.members == full.members and fast.cost == full.cost
    else:
        assert fast == full or not isinstance(fast, Placement)


requests = st.one_of(
    st.builds(
        MemberRequest, gpus=st.sampled_from([1, 2, 4, 8]), cpu_milli=st.sampled_from([0, 9000])
    ),
    st.builds(MemberRequest, gpu_milli=st.sampled_from([250, 500])),
    st.builds(MemberRequest, cpu_milli=st.sampled_from([1000, 64_000])),
)
gangs = st.one_of(
    st.builds(lambda r, n: Gang.uniform("one-class", n, r), requests, st.integers(1, 3)),
    st.builds(  # two classes: the search ranks every fitting node
        lambda r: Gang(
            "two-class",
            (Member("a", r), Member("b", MemberRequest(cpu_milli=2000))),
        ),
        requests,
    ),
)
operation = st.tuples(st.booleans(), st.integers(0, 11), st.integers(1, 8))


@settings(max_examples=60, deadline=None)
@given(
    kinds=st.text("hal", min_size=12, max_size=12),
    unit=st.sampled_from([2, 4]),
    ops=st.lists(operation, max_size=20),
    gang=gangs,
)
def test_one_pass_best_nodes_place_as_the_full_ranking(kinds, unit, ops, gang):
    state = _state(kinds, unit)
    c = state.compiled
    _same(gang, state)
    rng = np.random.default_rng(len(ops))
    held: list[tuple[int, tuple[int, ...]]] = []
    for release, node, count in ops:
        if release and held:
            n, gpus = held.pop(int(rng.integers(len(held))))
            c.release(n, gpus, 1000)
            continue
        free = np.flatnonzero(c.gpu_usable[node] & (c.gpu_used_milli[node] == 0))
        if free.size >= count:
            gpus = tuple(int(g) for g in rng.choice(free, size=count, replace=False))
            c.allocate(node, gpus, 1000)
            held.append((node, gpus))
        _same(gang, state)


def test_links_are_read_once_the_ranking_has_priced_them():
    """A member of several GPUs: the one-pass path reads the link term from the table that
    scoring fills; until a fitting node's entry is in it, the scorer declines."""
    state = _state("hhhh", 2)
    c = state.compiled
    scorer = TopologyScorer()
    units = np.ones(c.n_nodes, dtype=np.int64)
    two = MemberRequest(gpus=2)
    assert scorer.best_nodes(c, two, units, 1, 16) is None
    scorer.score(c, two, np.arange(c.n_nodes))
    best = scorer.best_nodes(c, two, units, 1, 16)
    assert best is not None and best.tolist() == [0, 1, 2, 3]  # an empty cluster: all tie
    c.allocate(1, (0, 1, 2), 1000)  # a new free-GPU mask: not priced yet
    assert scorer.best_nodes(c, two, units, 1, 16) is None
    scores = scorer.score(c, two, np.arange(c.n_nodes))
    best = scorer.best_nodes(c, two, units, 1, 16)
    assert best is not None
    assert best.tolist() == np.flatnonzero(scores == scores.max()).tolist()
