"""Placement answers the engine reuses instead of searching again.

The live ledger counts its changes of free capacity (:attr:`ClusterState.changes`); while it
is unchanged, a gang shape that found no room finds none again
(:class:`scheduler.unplaced_cache.UnplacedCache`), so a long queue of like gangs costs one search
per shape and cycle, with exactly the same answers. Shapes are also asked once each whether they
could fit on the empty cluster at all, and where they would go there (the best placement the
slowdown model compares with).
"""

from __future__ import annotations

from phalanx.scheduler.cost import communication_cost, lowest_common_domain
from phalanx.scheduler.engine import place
from phalanx.scheduler.gang import Gang, GangSpecError
from phalanx.scheduler.interfaces import PlacementScorer
from phalanx.scheduler.placement import Placement, PlacementResult, Unplaceable
from phalanx.scheduler.state import ClusterState
from phalanx.scheduler.unplaced_cache import UnplacedCache
from phalanx.topology.compiled import CompiledCluster


class PlacementMemo:
    """The engine's placement calls, on the live state and on the empty cluster."""

    def __init__(self, live: ClusterState, solver: str, scorer: PlacementScorer | None) -> None:
        self.live = live
        self.pristine = ClusterState(live.compiled.copy())
        self.solver = solver
        self.scorer = scorer
        self._no_room = UnplacedCache()
        self._verdicts: dict[tuple, str | None] = {}
        self._best_comm: dict[tuple, float] = {}

    def shape(self, gang: Gang) -> tuple:
        return self._no_room.shape(gang)

    def place(self, gang: Gang, state: ClusterState) -> PlacementResult:
        """The cycle's placement call (what-if copies are searched every time)."""
        if state is not self.live:
            return place(gang, state, solver=self.solver, scorer=self.scorer)
        known = self._no_room.get(gang, state)
        if known is not None:
            return known
        result = place(gang, state, solver=self.solver, scorer=self.scorer)
        if isinstance(result, Unplaceable):
            self._no_room.put(gang, state, result)
        return result

    def never_fits(self, gang: Gang) -> str | None:
        """Why ``gang`` cannot run even on the empty cluster, or None."""
        key = self.shape(gang)
        if key not in self._verdicts:
            try:
                result = place(gang, self.pristine)
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
        key = self.shape(gang)
        if key not in self._best_comm:
            result = place(gang, self.pristine)
            self._best_comm[key] = (
                comm_cost(result, self.pristine.compiled) if isinstance(result, Placement) else 0.0
            )
        return self._best_comm[key]


def comm_cost(placement: Placement, compiled: CompiledCluster) -> float:
    """Bottleneck link cost of a placement (0 for a single GPU)."""
    members = placement.members
    if len({(m.node_index, g) for m in members for g in m.gpus}) < 2:
        return 0.0
    level, _ = lowest_common_domain(compiled, [m.node_index for m in members])
    return communication_cost(compiled, members, level)
