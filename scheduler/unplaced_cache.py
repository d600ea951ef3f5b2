"""Gangs that did not fit, remembered until the free capacity changes.

A cycle tries every waiting gang (a non-strict queue lets later gangs try when an earlier one is
blocked), the extender runs a cycle on many filters (kube-scheduler retries each waiting
member), and the simulator runs one on every event. Placing a gang of the same shape (what it
asks for and where it may go, :func:`gang_shape`, not its name) against the same free capacity
gives the same answer, so a failed answer is kept until :attr:`ClusterState.changes` moves: a
long queue of like gangs costs one search per shape. Only answers about one live state are
kept (what-if copies and masked views are not the same capacity).
"""

from __future__ import annotations

from phalanx.scheduler.gang import Gang
from phalanx.scheduler.placement import Unplaceable
from phalanx.scheduler.state import ClusterState


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


class UnplacedCache:
    def __init__(self) -> None:
        self._entries: dict[tuple, Unplaceable] = {}
        self._shapes: dict[str, tuple[Gang, tuple]] = {}
        self._state: ClusterState | None = None
        self._changes = -1
        self.hits = 0

    def shape(self, gang: Gang) -> tuple:
        """The gang's shape, worked out once per gang object."""
        known = self._shapes.get(gang.name)
        if known is None or known[0] is not gang:
            known = self._shapes[gang.name] = (gang, gang_shape(gang))
        return known[1]

    def get(self, gang: Gang, state: ClusterState) -> Unplaceable | None:
        if state is not self._state or state.changes != self._changes:
            return None
        known = self._entries.get(self.shape(gang))
        if known is None:
            return None
        self.hits += 1
        return Unplaceable(gang.name, known.reason, known.constraint, known.level, known.proven)

    def put(self, gang: Gang, state: ClusterState, result: Unplaceable) -> None:
        """Keep ``result``; entries of an older capacity are dropped first (so the cache holds
        at most the shapes that failed since the last change)."""
        if state is not self._state or state.changes != self._changes:
            self._entries.clear()
            self._state, self._changes = state, state.changes
        self._entries[self.shape(gang)] = result

    def forget(self, name: str) -> None:
        """The gang is gone: its shape need not be kept."""
        self._shapes.pop(name, None)
