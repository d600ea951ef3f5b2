"""Where a gang would go on the empty cluster: the best case a placement is measured against.

The simulator asks it whether a gang can ever fit (else it is rejected, not queued forever) and
what its links would cost at best (the slowdown model's reference); the ``link-hold`` permit
asks what its links and fabric level would be at best (the hold's reference). All of them
mean the same placement (the fast search, no scorer) made once per gang shape, so one class
makes it.
"""

from __future__ import annotations

from phalanx.scheduler import engine
from phalanx.scheduler.cost import bottleneck_comm_cost, lowest_common_domain
from phalanx.scheduler.gang import Gang
from phalanx.scheduler.placement import Placement, PlacementResult
from phalanx.scheduler.state import ClusterState
from phalanx.scheduler.unplaced_cache import gang_shape
from phalanx.topology.compiled import CompiledCluster


class EmptyCluster:
    """Placements on the empty cluster of whatever ``compiled`` is asked about, once per gang
    shape (:func:`scheduler.unplaced_cache.gang_shape`); a new topology (another
    ``node_domain`` array) starts afresh."""

    def __init__(self) -> None:
        self._topology: object = None
        self._state: ClusterState | None = None
        self._results: dict[tuple, PlacementResult] = {}
        self._best: dict[tuple, tuple[float, int]] = {}

    def _empty(self, compiled: CompiledCluster) -> ClusterState:
        if self._topology is not compiled.node_domain or self._state is None:
            self._topology = compiled.node_domain
            self._state = ClusterState(compiled.emptied())
            self._results.clear()
            self._best.clear()
        return self._state

    def place(
        self, gang: Gang, compiled: CompiledCluster, shape: tuple | None = None
    ) -> PlacementResult:
        """Where ``gang`` goes on the empty cluster, or why it cannot; raises
        :class:`~scheduler.gang.GangSpecError` for a spec no state could fit (not kept).
        ``shape`` is the gang's :func:`gang_shape`, where the caller has it already."""
        empty = self._empty(compiled)
        key = gang_shape(gang) if shape is None else shape
        result = self._results.get(key)
        if result is None:
            result = self._results[key] = engine.place(gang, empty)
        return result

    def best_case(
        self, gang: Gang, compiled: CompiledCluster, shape: tuple | None = None
    ) -> tuple[float, int]:
        """Bottleneck link cost of ``gang`` on the empty cluster and the fabric level that
        placement spans (0, 0 when it would not fit there)."""
        key = gang_shape(gang) if shape is None else shape
        empty = self._empty(compiled)  # a new topology drops the remembered best cases
        best = self._best.get(key)
        if best is None:
            result = self.place(gang, compiled, key)
            best = (0.0, 0)
            if isinstance(result, Placement):
                members = result.members
                level, _ = lowest_common_domain(compiled, [m.node_index for m in members])
                best = (bottleneck_comm_cost(empty.compiled, members), level)
            self._best[key] = best
        return best
