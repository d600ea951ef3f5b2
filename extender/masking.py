"""Keep the planner off nodes kube-scheduler did not offer.

kube-scheduler sends the extender only the nodes that passed its own filters (taints, affinity,
resource fit, cordons, NotReady). A cycle that must keep off the others runs on a snapshot of
the ledger in which they have nothing free (the per-cycle what-if copy of Kueue's cache), never
on the live state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from phalanx.extender.node_list import NodeNameList
from phalanx.extender.node_table import UNKNOWN, NodeNameTable
from phalanx.scheduler.cycle import CycleOutcome
from phalanx.scheduler.state import ClusterState
from phalanx.topology.compiled import CompiledCluster


def without_nodes(state: ClusterState, nodes: np.ndarray) -> ClusterState:
    """A what-if snapshot of ``state`` in which ``nodes`` (indices) have nothing free
    (:meth:`ClusterState.without_nodes`): a cycle run on it plans around them while the live
    ledger stays untouched. What the cycle decides is then taken on the live state: its
    victims released (:func:`take_victims`), its plans held as the planner holds any plan
    made outside it."""
    return state.without_nodes(nodes)


def take_victims(live: ClusterState, outcome: CycleOutcome) -> None:
    """Release on the live ledger the victims a cycle run on a snapshot released there (its
    started gangs are then held by the caller, as any plan made outside the live state)."""
    for decision in outcome.preempted:
        for victim in decision.victims:
            if victim in live.holdings:
                live.release(victim)


RECENT_OFFER_LISTS = 4
"""Offered lists remembered (kube-scheduler may offer one list to consecutive pods)."""
MIN_REMEMBERED_OFFER = 64
"""Shorter lists (prioritize's filter survivors) are resolved faster than compared, and
remembering them would push the long lists out."""


@dataclass(frozen=True, eq=False)
class Offer:
    """An offered node list resolved against the cluster, so that the planner's questions
    (is this node offered, which nodes to withhold) cost no pass over the names. The names are
    resolved on the first question (a filter that rejects every offered node for one reason,
    a gang waiting for its members, asks none); positions of the known names and the unknown
    names themselves only when asked for (a list that offers every node once, the common case,
    needs neither)."""

    compiled: CompiledCluster
    names: Sequence[str]
    table: NodeNameTable | None = None
    """Resolves a :class:`NodeNameList` in one compiled pass; other lists (and lists without a
    table) are looked up name by name."""
    same_set: Offer | None = None
    """An offer of the same names in another order (:class:`OfferedIndex` matched the lists'
    fingerprints): which nodes are offered is read from it, so this list's names are looked
    up only where a question needs their order."""

    @classmethod
    def resolve(
        cls, compiled: CompiledCluster, names: Sequence[str], table: NodeNameTable | None = None
    ) -> Offer:
        """The offer of ``names``, kept as they are now (a list is copied: the caller may
        change it later)."""
        return cls(compiled, names if isinstance(names, NodeNameList) else list(names), table)

    @cached_property
    def _resolved(self) -> tuple[np.ndarray, np.ndarray, int, int]:
        """``(found, offered, unknown_count, offered_count)``."""
        compiled, names = self.compiled, self.names
        if isinstance(names, NodeNameList) and self.table is not None:
            r = self.table.resolve(names)
            return r.found, r.offered, r.unknown, r.distinct
        index = compiled.node_index
        found = np.fromiter((index.get(n, UNKNOWN) for n in names), np.int64, len(names))
        known = found[found != UNKNOWN]
        offered = np.zeros(compiled.n_nodes, dtype=bool)
        offered[known] = True
        return found, offered, len(names) - known.size, int(np.count_nonzero(offered))

    @cached_property
    def _membership(self) -> tuple[np.ndarray, int, int]:
        """``(offered, unknown_count, offered_count)``: what every question but the order of
        the names reads."""
        if self.same_set is not None:
            return self.same_set._membership
        _, offered, unknown_count, offered_count = self._resolved
        return offered, unknown_count, offered_count

    @property
    def resolved(self) -> bool:
        """Whether a question has resolved the names yet."""
        return "_membership" in self.__dict__ or "_resolved" in self.__dict__

    @property
    def found(self) -> np.ndarray:
        """Node index of each listed name, ``UNKNOWN`` for names Phalanx does not know."""
        return self._resolved[0]

    @property
    def offered(self) -> np.ndarray:
        """Per cluster node: is it offered."""
        return self._membership[0]

    @property
    def unknown_count(self) -> int:
        return self._membership[1]

    @property
    def offered_count(self) -> int:
        """How many cluster nodes are offered (each counted once)."""
        return self._membership[2]

    def distinct_known(self) -> bool:
        """Is every listed name a node of the cluster, none listed twice."""
        return not self.unknown_count and self.offered_count == len(self.names)

    @cached_property
    def known_at(self) -> np.ndarray:
        """Position in ``names`` of each name Phalanx knows."""
        if not self.unknown_count:
            return np.arange(len(self.names))
        return np.flatnonzero(self.found != UNKNOWN)

    @cached_property
    def known(self) -> np.ndarray:
        """Indices of the offered nodes Phalanx knows, in offer order."""
        return self.found[self.known_at] if self.unknown_count else self.found

    @cached_property
    def unknown(self) -> list[str]:
        """Offered names Phalanx does not know."""
        if not self.unknown_count:
            return []
        return [self.names[i] for i in np.flatnonzero(self.found == UNKNOWN).tolist()]

    def includes(self, node: str) -> bool:
        """Is ``node`` in the list (without a pass over it)."""
        index = self.compiled.node_index.get(node)
        return bool(self.offered[index]) if index is not None else node in self.unknown

    def position(self, node_index: int) -> int | None:
        """Where the node first appears in the list, None when it is not offered."""
        if not self.offered[node_index]:
            return None
        return int(self.known_at[np.argmax(self.known == node_index)])

    @cached_property
    def outside(self) -> np.ndarray:
        """Indices of the cluster nodes not offered; computed once per offer (usually empty,
        known to be without a pass when every node is offered)."""
        if self.offered_count == self.compiled.n_nodes:
            return np.empty(0, dtype=np.int64)
        return np.flatnonzero(~self.offered)

    def withheld_nodes(self) -> np.ndarray:
        """Nodes outside the offer that still have something free (the only ones worth
        withholding from the planner)."""
        outside, c = self.outside, self.compiled
        free = (c.free_gpu_count[outside] > 0) | (c.cpu_free_milli[outside] > 0)
        return outside[free]


class OfferedIndex:
    """Offered lists -> :class:`Offer` for one cluster view, remembering recent long lists:
    kube-scheduler may offer the same list to consecutive pods, and comparing two lists (of
    the same kind: bytes with bytes, strings with strings) is cheaper than resolving one.

    More often it offers the same nodes in another order: its filters run in parallel and
    its feasible list comes back in completion order. A list kept as bytes carries an
    order-free fingerprint of its names (:attr:`NodeNameList.fingerprint`), so a list with the
    fingerprint of a recent list whose names were all known, each once, reads which nodes
    are offered from that list instead of looking its names up."""

    def __init__(self, compiled: CompiledCluster) -> None:
        self.compiled = compiled
        self.table = NodeNameTable(compiled.node_names)
        self._recent: list[Offer] = []
        self._by_set: dict[tuple[int, int, int], Offer] = {}

    def __call__(self, names: Sequence[str]) -> Offer:
        for i, offer in enumerate(self._recent):
            if type(offer.names) is type(names) and offer.names == names:
                if i:
                    self._recent.insert(0, self._recent.pop(i))
                return offer
        if len(names) < MIN_REMEMBERED_OFFER:
            return Offer.resolve(self.compiled, names, self.table)
        offer = self._by_fingerprint(names)
        self._recent.insert(0, offer)
        del self._recent[RECENT_OFFER_LISTS:]
        return offer

    def _by_fingerprint(self, names: Sequence[str]) -> Offer:
        if not isinstance(names, NodeNameList):
            return Offer.resolve(self.compiled, names, self.table)
        key = names.fingerprint
        twin = self._by_set.get(key)
        if twin is not None and twin.resolved and twin.distinct_known():
            return Offer(self.compiled, names, self.table, same_set=twin)
        offer = Offer.resolve(self.compiled, names, self.table)
        self._by_set.pop(key, None)
        self._by_set[key] = offer
        while len(self._by_set) > RECENT_OFFER_LISTS:
            del self._by_set[next(iter(self._by_set))]
        return offer
