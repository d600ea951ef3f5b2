"""Gangs that did not fit, remembered until the free capacity changes.

A cycle tries every waiting gang (a non-strict queue lets later gangs try when an earlier one is
blocked), and the extender runs a cycle on many filters: kube-scheduler retries each waiting
member, while nothing in the ledger changed since the last try. Placing a gang against the same
free capacity gives the same answer, so the answer is kept, keyed by the gang object (callers
build a new one whenever a gang changes) and by :attr:`ClusterState.changes`; any allocation or
release makes every entry stale. Only answers about the live state are kept (what-if copies
and masked views are not the same capacity).
"""

from __future__ import annotations

from phalanx.scheduler.gang import Gang
from phalanx.scheduler.placement import Unplaceable
from phalanx.scheduler.state import ClusterState


class UnplacedCache:
    def __init__(self) -> None:
        self._entries: dict[str, tuple[Gang, Unplaceable]] = {}
        self._state: ClusterState | None = None
        self._changes = -1
        self.hits = 0

    def get(self, gang: Gang, state: ClusterState) -> Unplaceable | None:
        if state is not self._state or state.changes != self._changes:
            return None
        entry = self._entries.get(gang.name)
        if entry is None or entry[0] is not gang:
            return None
        self.hits += 1
        return entry[1]

    def put(self, gang: Gang, state: ClusterState, result: Unplaceable) -> None:
        """Keep ``result``; entries of an older capacity are dropped first (so the cache holds
        at most the gangs that failed since the last change)."""
        if state is not self._state or state.changes != self._changes:
            self._entries.clear()
            self._state, self._changes = state, state.changes
        self._entries[gang.name] = (gang, result)
