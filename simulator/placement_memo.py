"""Placement answers the engine reuses instead of searching again.

The live ledger counts its changes (:class:`VersionedState`); while it is unchanged, a gang
shape that found no room finds none again, so a long queue of like gangs costs one search per
shape and cycle, with exactly the same answers. Shapes are also asked once each whether they
could fit on the empty cluster at all, and where they would go there (the best placement the
slowdown model compares with).
"""

from __future__ import annotations

import math

from phalanx.scheduler.cost import communication_cost, lowest_common_domain
from phalanx.scheduler.engine import place
from phalanx.scheduler.gang import Gang, GangSpecError
from phalanx.scheduler.interfaces import PlacementScorer
from phalanx.scheduler.placement import Placement, PlacementResult, Unplaceable
from phalanx.scheduler.state import ClusterState, Holding
from phalanx.topology.compiled import CompiledCluster


class VersionedState(ClusterState):
    """The live ledger, counting its changes so that placement answers can be reused while
    nothing has changed (what-if copies are plain :class:`ClusterState` objects)."""

    def __init__(self, compiled: CompiledCluster) -> None:
        super().__init__(compiled)
        self.version = 0

    def reserve(self, placement: Placement, now_s: float, ttl_s: float = math.inf) -> Holding:
        self.version += 1
        return super().reserve(placement, now_s, ttl_s)

    def commit(self, gang: str, member: str | None = None) -> Holding:
        self.version += 1
        return super().commit(gang, member)

    def release(self, gang: str) -> Placement:
        self.version += 1
        return super().release(gang)


def gang_shape(gang: Gang) -> tuple:
    """Everything about a gang that decides where it can go (not its name)."""
    return (
        tuple(
            (
                r.gpus,
                r.gpu_milli,
                r.cpu_milli,
                r.memory_mib,
                r.gpu_products,
                tuple(sorted(r.node_selector.items())),
                r.tolerations,
            )
            for r in (m.request for m in gang.members)
        ),
        gang.min_members,
        gang.nvlink_group,
        gang.required_level,
        gang.preferred_level,
    )


class PlacementMemo:
    """The engine's placement calls, on the live state and on the empty cluster."""

    def __init__(self, live: VersionedState, solver: str, scorer: PlacementScorer | None) -> None:
        self.live = live
        self.pristine = ClusterState(live.compiled.copy())
        self.solver = solver
        self.scorer = scorer
        self._shapes: dict[str, tuple] = {}
        self._no_room: dict[tuple, Unplaceable] = {}
        self._no_room_version = -1
        self._verdicts: dict[tuple, str | None] = {}
        self._best_comm: dict[tuple, float] = {}

    def shape(self, gang: Gang) -> tuple:
        shape = self._shapes.get(gang.name)
        if shape is None:
            shape = self._shapes[gang.name] = gang_shape(gang)
        return shape

    def place(self, gang: Gang, state: ClusterState) -> PlacementResult:
        """The cycle's placement call (what-if copies are searched every time)."""
        if state is not self.live:
            return place(gang, state, solver=self.solver, scorer=self.scorer)
        if self._no_room_version != self.live.version:
            self._no_room.clear()
            self._no_room_version = self.live.version
        key = self.shape(gang)
        known = self._no_room.get(key)
        if known is not None:
            return Unplaceable(gang.name, known.reason, known.constraint, known.level, known.proven)
        result = place(gang, state, solver=self.solver, scorer=self.scorer)
        if isinstance(result, Unplaceable):
            self._no_room[key] = result
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
