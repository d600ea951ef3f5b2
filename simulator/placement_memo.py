"""Placement answers the engine reuses instead of searching again.

The live ledger counts its changes of free capacity (:attr:`ClusterState.changes`); while it
is unchanged, a gang shape that found no room finds none again
(:class:`scheduler.unplaced_cache.UnplacedCache`), so a long queue of like gangs costs one search
per shape and cycle, with exactly the same answers. A shape that did find room finds the same
room again, member for member, until the state changes: the fast search is a function of the
shape, the gang's communication intensity and the free capacity, and it names members by their
position in the gang. That case is a queue policy turning a placed gang away (backfill: it would
delay the reserved head): the state is unchanged and the next gang of that shape is placed,
and turned away, the same way; on Philly under backfill nine in ten successful placements were
such repeats. Shapes are also asked once each whether they could fit on the empty cluster at
all, and where they would go there (the best placement the slowdown model compares with).
"""

from __future__ import annotations

from phalanx.scheduler.cost import bottleneck_comm_cost
from phalanx.scheduler.empty_cluster import EmptyCluster
from phalanx.scheduler.engine import place
from phalanx.scheduler.gang import Gang, GangSpecError
from phalanx.scheduler.interfaces import PlacementScorer
from phalanx.scheduler.placement import MemberPlacement, Placement, PlacementResult, Unplaceable
from phalanx.scheduler.state import ClusterState
from phalanx.scheduler.unplaced_cache import UnplacedCache
from phalanx.topology.compiled import CompiledCluster


class PlacementMemo:
    """The engine's placement calls, on the live state and on the empty cluster."""

    def __init__(self, live: ClusterState, solver: str, scorer: PlacementScorer | None) -> None:
        self.live = live
        self.empty = EmptyCluster()
        self.solver = solver
        self.scorer = scorer
        self._no_room = UnplacedCache()
        self._fitted: dict[tuple, Placement] = {}
        """(shape, communication intensity) -> where the fast search put it, for one state."""
        self._fitted_changes = -1
        self._verdicts: dict[tuple, str | None] = {}

    def shape(self, gang: Gang) -> tuple:
        return self._no_room.shape(gang)

    def place(self, gang: Gang, state: ClusterState) -> PlacementResult:
        """The cycle's placement call (what-if copies are searched every time)."""
        if state is not self.live:
            return place(gang, state, solver=self.solver, scorer=self.scorer)
        known = self._no_room.get(gang, state)
        if known is not None:
            return known
        fitted = self._fitted_again(gang, state)
        if fitted is not None:
            return fitted
        result = place(gang, state, solver=self.solver, scorer=self.scorer)
        if isinstance(result, Unplaceable):
            self._no_room.put(gang, state, result)
        elif self.solver == "fast":  # the exact solver's answer may depend on its time limit
            if state.changes != self._fitted_changes:
                self._fitted.clear()
                self._fitted_changes = state.changes
            self._fitted[(self.shape(gang), gang.comm_intensity)] = result
        return result

    def _fitted_again(self, gang: Gang, state: ClusterState) -> Placement | None:
        """Where a gang of this shape was just placed on the unchanged state, for ``gang``:
        its own name, and each member named by its position (as the search names them). A
        gang whose names the engine would refuse (none, repeated members) is searched."""
        if state.changes != self._fitted_changes:
            return None
        fitted = self._fitted.get((self.shape(gang), gang.comm_intensity))
        if fitted is None or not gang.name:
            return None
        members = gang.members
        if len(members) > 1 and len({m.name for m in members}) != len(members):
            return None
        # a placement's fields with two of them changed (dataclasses.replace looks the fields
        # up on every call: a third of what serving a refused gang's repeat cost)
        return Placement(
            **{
                **fitted.__dict__,
                "gang": gang.name,
                "members": tuple(
                    MemberPlacement(**{**m.__dict__, "member": members[m.rank].name})
                    for m in fitted.members
                ),
            }
        )

    def never_fits(self, gang: Gang) -> str | None:
        """Why ``gang`` cannot run even on the empty cluster, or None."""
        key = self.shape(gang)
        if key not in self._verdicts:
            try:
                result = self.empty.place(gang, self.live.compiled, key)
            except GangSpecError as err:
                self._verdicts[key] = f"invalid on this cluster: {err}"
            else:
                self._verdicts[key] = (
                    f"does not fit even on the empty cluster: {result.reason}"
                    if isinstance(result, Unplaceable)
                    else None
                )
        return self._verdicts[key]

    def best_comm_cost(self, gang: Gang) -> float:
        """Bottleneck link cost of ``gang`` placed on the empty cluster."""
        return self.empty.best_case(gang, self.live.compiled, self.shape(gang))[0]


def comm_cost(placement: Placement, compiled: CompiledCluster) -> float:
    """Bottleneck link cost of a placement (0 for a single GPU)."""
    return bottleneck_comm_cost(compiled, placement.members)
