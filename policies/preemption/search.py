"""The gang-aware victim search every preemption policy shares.

Victims are whole gangs. Nothing counts as a solution until the preemptor's full placement has
been found on a copy of the state with the victims released, so a decision never evicts
without then placing the preemptor (the failure mode of per-pod preemption, volcano #4607,
PR #5011). The search takes candidates cheapest first: the shortest prefix of the candidate
list that lets the preemptor fit (binary search over the prefix length), then drops every
victim the placement turns out not to need, most expensive first, so the set is minimal.
"""

from __future__ import annotations

from collections.abc import Sequence

from phalanx.scheduler.gang import Gang
from phalanx.scheduler.interfaces import PlaceFunction, RunningGang
from phalanx.scheduler.placement import Placement
from phalanx.scheduler.state import ClusterState


def released(state: ClusterState, victims: Sequence[RunningGang]) -> ClusterState:
    what_if = state.copy()
    for r in victims:
        what_if.release(r.gang.name)
    return what_if


def find_victims(
    preemptor: Gang,
    state: ClusterState,
    place: PlaceFunction,
    candidates: Sequence[RunningGang],
) -> tuple[list[RunningGang], Placement] | None:
    """Smallest cheap prefix of ``candidates`` (ordered cheapest first) whose eviction lets
    ``preemptor`` be placed, pruned to a minimal set; with the placement it then gets."""
    candidates = [r for r in candidates if r.gang.name in state.holdings]
    if not candidates or not isinstance(place(preemptor, released(state, candidates)), Placement):
        return None
    lo, hi = 1, len(candidates)
    while lo < hi:
        mid = (lo + hi) // 2
        if isinstance(place(preemptor, released(state, candidates[:mid])), Placement):
            hi = mid
        else:
            lo = mid + 1
    victims = list(candidates[:lo])
    for r in reversed(candidates[:lo]):
        trial = [v for v in victims if v is not r]
        if isinstance(place(preemptor, released(state, trial)), Placement):
            victims = trial
    result = place(preemptor, released(state, victims))
    if not isinstance(result, Placement):
        return None
    return victims, result
