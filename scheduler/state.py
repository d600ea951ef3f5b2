"""The allocation ledger: who holds which GPU (or GPU share), cpu and memory, and reservations.

A gang's placement is taken whole by :meth:`ClusterState.reserve` (held for a TTL while its pods
bind), made permanent by :meth:`ClusterState.commit`, and given back whole by
:meth:`ClusterState.release` or :meth:`ClusterState.expire`. Every operation either completes or
leaves the state exactly as it was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import StrEnum

import numpy as np
from phalanx.scheduler.placement import MemberPlacement, Placement
from phalanx.topology.compiled import CapacityError, CompiledCluster
from phalanx.topology.model import MILLI_PER_GPU


class LedgerError(ValueError):
    """An operation on an unknown gang or in the wrong phase; the state is unchanged."""


class HoldingPhase(StrEnum):
    RESERVED = "reserved"
    COMMITTED = "committed"


@dataclass
class Holding:
    """What one gang holds, and until when (``expires_at_s`` is inf once committed)."""

    placement: Placement
    phase: HoldingPhase
    reserved_at_s: float
    expires_at_s: float
    bound_members: set[str] = field(default_factory=set)


class ClusterState:
    """Free capacity (the compiled arrays) plus the ledger of holdings by gang name."""

    def __init__(self, compiled: CompiledCluster) -> None:
        self.compiled = compiled
        self.holdings: dict[str, Holding] = {}
        self.changes = 0
        """Counts every change of free capacity: equal counts, same free capacity."""

    def copy(self) -> ClusterState:
        """An independent what-if copy (preemption and backfill planning)."""
        clone = ClusterState(self.compiled.copy())
        clone.holdings = {
            g: replace(h, bound_members=set(h.bound_members)) for g, h in self.holdings.items()
        }
        return clone

    def snapshot(self) -> ClusterState:
        """A what-if copy for one scheduling cycle: the free-capacity arrays copied, the
        ledger's entries shared. A cycle only adds holdings (new objects) and removes them, it
        never changes one it did not create, so sharing the entries is safe there and saves
        copying every holding of a large cluster; anything that commits or binds uses
        :meth:`copy`."""
        clone = ClusterState(self.compiled.copy())
        clone.holdings = dict(self.holdings)
        return clone

    def without_nodes(self, nodes: np.ndarray) -> ClusterState:
        """A what-if :meth:`snapshot` in which ``nodes`` (indices) have no free GPU, cpu or
        memory: a cycle run on it plans around them while this ledger stays untouched (the
        extender keeping off nodes kube-scheduler did not offer, other gangs keeping off the
        nodes a held gang waits for). A placement found there fits here as well."""
        nodes = np.asarray(nodes, dtype=np.int64)
        what_if = self.snapshot()
        if nodes.size == 0:
            return what_if
        c = what_if.compiled
        counts = np.tile(c.free_gpu_count[nodes].astype(np.int64), c.n_levels)
        np.subtract.at(c.domain_free_gpus, c.node_domain[:, nodes].ravel(), counts)
        c.gpu_used_milli[nodes] = MILLI_PER_GPU
        c.cpu_free_milli[nodes] = 0
        c.memory_free_mib[nodes] = 0
        c.free_gpu_mask[nodes] = 0
        c.free_gpu_count[nodes] = 0
        c.note_changed(*nodes.tolist())
        return what_if

    # ------------------------------------------------------------------ operations
    def reserve(self, placement: Placement, now_s: float, ttl_s: float = math.inf) -> Holding:
        """Take every member's resources, or none of them."""
        if placement.gang in self.holdings:
            raise LedgerError(f"gang {placement.gang!r} already holds a placement")
        if not ttl_s > 0:  # also refuses NaN, which would never expire
            raise LedgerError(f"reservation TTL must be positive, got {ttl_s}")
        taken: list[MemberPlacement] = []
        try:
            for m in placement.members:
                self._take(m)
                taken.append(m)
        except CapacityError:
            for m in reversed(taken):
                self._give(m)
            raise
        holding = Holding(placement, HoldingPhase.RESERVED, now_s, now_s + ttl_s)
        self.holdings[placement.gang] = holding
        return holding

    def commit(self, gang: str, member: str | None = None) -> Holding:
        """Mark one member (or, with ``member=None``, all) as bound; once every member is
        bound the holding no longer expires."""
        holding = self._holding(gang)
        names = {m.member for m in holding.placement.members}
        if member is None:
            holding.bound_members = set(names)
        elif member not in names:
            raise LedgerError(f"gang {gang!r} has no placed member {member!r}")
        else:
            holding.bound_members.add(member)
        if holding.bound_members == names:
            holding.phase = HoldingPhase.COMMITTED
            holding.expires_at_s = math.inf
        return holding

    def assign(self, placement: Placement, now_s: float) -> Holding:
        """Reserve and commit at once (the simulator; rebuilding state from bound pods)."""
        self.reserve(placement, now_s)
        return self.commit(placement.gang)

    def release(self, gang: str) -> Placement:
        """Give back everything the gang holds."""
        holding = self._holding(gang)
        for m in holding.placement.members:
            self._give(m)
        del self.holdings[gang]
        return holding.placement

    def shrink(self, gang: str, members: set[str], now_s: float) -> Holding:
        """Give back ``members`` of the gang's placement and hold the rest: the state that
        releasing it whole and reserving the rest again from ``now_s`` leaves (the same free
        capacity; the holding last in order, reserved at ``now_s``, expiring when it did,
        committed once every member left is bound), without taking the kept members'
        resources out and in again: one member of a large gang finishing at a time made that
        quadratic in the gang's size. A new :class:`Holding` replaces the old one, which
        still describes the whole placement for whoever kept it."""
        holding = self._holding(gang)
        keep = tuple(m for m in holding.placement.members if m.member not in members)
        if not keep:
            raise LedgerError(f"gang {gang!r} would keep no member; release it instead")
        for m in holding.placement.members:
            if m.member in members:
                self._give(m)
        del self.holdings[gang]
        kept = Holding(
            replace(holding.placement, members=keep),
            holding.phase,
            now_s,
            holding.expires_at_s,
            holding.bound_members - members,
        )
        self.holdings[gang] = kept
        if {m.member for m in keep} <= kept.bound_members:
            return self.commit(gang)
        return kept

    def expire(self, now_s: float) -> list[str]:
        """Release every reservation whose TTL has passed; returns the gangs released."""
        due = [g for g, h in self.holdings.items() if h.expires_at_s <= now_s]
        for gang in due:
            self.release(gang)
        return due

    # ------------------------------------------------------------------ queries
    def holders(self, node: int, gpu: int) -> list[str]:
        """Gangs holding any share of GPU ``gpu`` on node index ``node``."""
        return [
            gang
            for gang, h in self.holdings.items()
            for m in h.placement.members
            if m.node_index == node and gpu in m.gpus
        ]

    def check_invariants(self) -> None:
        """Recompute usage from the ledger and compare with the compiled arrays; raises
        AssertionError naming the first disagreement."""
        c = self.compiled
        used = np.where(c.gpu_usable, 0, MILLI_PER_GPU).astype(np.int64)
        cpu = np.zeros(c.n_nodes, dtype=np.int64)
        mem = np.zeros(c.n_nodes, dtype=np.int64)
        for h in self.holdings.values():
            for m in h.placement.members:
                for g in m.gpus:
                    used[m.node_index, g] += m.gpu_milli
                cpu[m.node_index] += m.cpu_milli
                mem[m.node_index] += m.memory_mib
        if (used > MILLI_PER_GPU).any():
            node, gpu = np.argwhere(used > MILLI_PER_GPU)[0]
            raise AssertionError(f"GPU {gpu} of node {c.node_names[node]} over-allocated")
        if not np.array_equal(used, c.gpu_used_milli):
            raise AssertionError("ledger and compiled GPU usage disagree")
        if not np.array_equal(c.cpu_capacity_milli - cpu, c.cpu_free_milli):
            raise AssertionError("ledger and compiled cpu usage disagree")
        if not np.array_equal(c.memory_capacity_mib - mem, c.memory_free_mib):
            raise AssertionError("ledger and compiled memory usage disagree")
        if (c.cpu_free_milli < 0).any() or (c.memory_free_mib < 0).any():
            raise AssertionError("node cpu or memory exceeded")
        free = (c.gpu_used_milli == 0) & c.gpu_usable
        if not np.array_equal(free.sum(axis=1), c.free_gpu_count):
            raise AssertionError("free GPU counts are stale")
        bits = np.left_shift(np.uint64(1), np.arange(c.max_gpus, dtype=np.uint64))
        if not np.array_equal((free * bits).sum(axis=1, dtype=np.uint64), c.free_gpu_mask):
            raise AssertionError("free GPU masks are stale")
        expected_domains = np.zeros_like(c.domain_free_gpus)
        np.add.at(expected_domains, c.node_domain.ravel(), np.tile(c.free_gpu_count, c.n_levels))
        if not np.array_equal(expected_domains, c.domain_free_gpus):
            raise AssertionError("per-domain free GPU counts are stale")

    # ------------------------------------------------------------------ internals
    def _holding(self, gang: str) -> Holding:
        try:
            return self.holdings[gang]
        except KeyError:
            raise LedgerError(f"gang {gang!r} holds nothing") from None

    def _take(self, m: MemberPlacement) -> None:
        self.changes += 1
        self.compiled.allocate(m.node_index, m.gpus, m.gpu_milli, m.cpu_milli, m.memory_mib)

    def _give(self, m: MemberPlacement) -> None:
        self.changes += 1
        self.compiled.release(m.node_index, m.gpus, m.gpu_milli, m.cpu_milli, m.memory_mib)
