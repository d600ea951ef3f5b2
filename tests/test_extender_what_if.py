"""Issue #12, structure: the extender's what-if questions never change the live ledger.

A cycle that must keep off nodes kube-scheduler rejected runs on a snapshot in which they have
nothing free, and prioritize prices a member's alternatives on a copy without its reservation;
the live arrays are the same before, during and after.
"""

from __future__ import annotations

import numpy as np
from phalanx.extender import scoring
from phalanx.extender.masking import without_nodes
from phalanx.extender.planner import Planner
from phalanx.policies.registry import get_queue_policy
from phalanx.scheduler.cycle import SchedulingCycle
from phalanx.scheduler.state import ClusterState
from phalanx.topology.compiled import CompiledCluster
from phalanx.topology.presets import cluster_preset

from tests.fake_apiserver import kube_pod, phalanx_gang


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _planner(nodes: int = 4) -> tuple[Planner, list[str]]:
    cluster = cluster_preset(f"dgx-h100:{nodes}")
    planner = Planner(cluster, get_queue_policy("fifo"), clock=Clock())
    return planner, [n.name for n in cluster.nodes]


def _pod(gang: str, i: int, size: int, gpus: int = 8) -> dict:
    return kube_pod(f"{gang}-{i}", gpus=gpus, annotations=phalanx_gang(gang, size))


def test_a_snapshot_without_nodes_leaves_the_live_state_alone():
    state = ClusterState(cluster_preset("dgx-h100:4").compile())
    before = state.compiled.mutable_state_bytes()
    what_if = without_nodes(state, np.array([1, 3]))
    assert state.compiled.mutable_state_bytes() == before
    c = what_if.compiled
    assert c.free_gpu_count[[1, 3]].tolist() == [0, 0]
    assert c.free_gpu_count[[0, 2]].tolist() == [8, 8]
    # the per-domain counts agree with the withheld rows: the fabric sees 16 free GPUs
    assert int(c.domain_free_gpus[c.node_domain[-1, 0]]) == 16


def test_a_cycle_over_a_partial_offer_runs_on_a_snapshot(monkeypatch):
    """kube-scheduler offered 2 of 4 free nodes (its own filters rejected the others): the
    gang is planned on the offered ones, and during the cycle the live ledger still shows the
    rejected nodes free."""
    planner, names = _planner()
    seen: list[tuple[bool, list[int]]] = []
    run = SchedulingCycle.run

    def spy(self, *args, **kw):
        live = planner.state.compiled.free_gpu_count
        seen.append((self.state is planner.state, live.tolist()))
        return run(self, *args, **kw)

    monkeypatch.setattr(SchedulingCycle, "run", spy)
    offered = [names[1], names[3]]
    assert planner.filter(_pod("g", 1, 2), offered).passing == []  # 1 of 2 members
    first = planner.filter(_pod("g", 0, 2), offered)
    assert first.passing in ([names[1]], [names[3]])
    assert seen == [(False, [8, 8, 8, 8])]
    plan = planner.state.holdings
    nodes = sorted(m.node for h in plan.values() for m in h.placement.members)
    assert nodes == sorted(offered)
    planner.state.check_invariants()
    second = planner.filter(_pod("g", 1, 2), offered)
    assert second.passing and second.passing[0] in offered


def test_alternative_scores_price_on_a_copy(monkeypatch):
    """Prioritize with every node: the live arrays are never written (the planned member's
    GPUs are not given back even for a moment), and the scores are those of the cluster
    without the member's reservation."""
    planner, names = _planner()
    planner.filter(_pod("g", 1, 2), names)
    decision = planner.filter(_pod("g", 0, 2), names)
    compiled = planner.compiled
    before = compiled.mutable_state_bytes()
    writes: list[str] = []
    for name in ("release", "allocate"):
        method = getattr(CompiledCluster, name)

        def recorded(self, *a, _method=method, _name=name, **k):
            if self is compiled:
                writes.append(_name)
            return _method(self, *a, **k)

        monkeypatch.setattr(CompiledCluster, name, recorded)
    scores = planner.prioritize(_pod("g", 0, 2), names)
    assert writes == []
    assert compiled.mutable_state_bytes() == before
    planned = names.index(decision.passing[0])
    assert scores[planned] == scoring.MAX_EXTENDER_PRIORITY
    others = np.delete(scores, planned)
    assert (others <= scoring.ALTERNATIVE_TOP).all() and (others >= 0).all()
    # the sibling's node has no room left; the two empty nodes can take the member
    sibling = next(
        m.node_index
        for h in planner.state.holdings.values()
        for m in h.placement.members
        if m.node_index != planned
    )
    assert scores[sibling] == 0
    assert (np.delete(scores, [planned, sibling]) > 0).all()
