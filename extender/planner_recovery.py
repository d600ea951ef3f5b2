"""Recovery from the cluster: rebuilding plans from the pods at start (or after a new leader
takes over), carrying them over a changed node set, and accounting for pods others bound.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from phalanx.extender import annotations as keys
from phalanx.extender.binding import PlanFormatError, decode_plan
from phalanx.extender.masking import OfferedIndex
from phalanx.extender.planner_ledger import (
    EXTERNAL_PREFIX,
    _extra_number,
    _fits_shape,
    _gang_key_of,
)
from phalanx.extender.podspec import node_of
from phalanx.extender.records import GangRecord, PodRecord
from phalanx.scheduler.placement import CostBreakdown, MemberPlacement, Placement
from phalanx.scheduler.reservations import ReservationBook
from phalanx.scheduler.state import ClusterState
from phalanx.topology.model import MILLI_PER_GPU, NODE_LEVEL, Cluster

log = logging.getLogger(__name__)


class RecoveryMixin:
    """Rebuilding the ledger from the cluster; mixed into :class:`extender.planner.Planner`."""

    def recover(self, pods: Iterable[dict[str, Any]]) -> None:
        """Rebuild allocations from the cluster at start: pods bound by others first, then the
        pods Phalanx bound (re-reserving the unbound ranks of their gangs' plans), then the
        pending ones."""
        ordered = sorted(pods, key=_recovery_order)
        with self.lock:
            self._recovering = True
            try:
                for pod in ordered:
                    self._observe(pod)
            finally:
                self._recovering = False
            for gang in list(self.gangs.values()):
                for ledger_key in list(gang.plans):
                    holding = self.state.holdings[ledger_key]
                    gone = {m.member for m in holding.placement.members} - set(gang.members)
                    if gone:
                        self._drop(ledger_key, gone)

    def set_cluster(self, cluster: Cluster) -> None:
        """The node set or a node's topology changed: rebuild the arrays and carry every plan
        over; members on nodes that are gone lose their place and are planned again."""
        compiled = cluster.compile()
        with self.lock:
            old = self.state
            now = self.clock()
            self.state = ClusterState(compiled)
            self._taint_keys = self._cluster_taints()
            self._offered = OfferedIndex(compiled)
            book = self.book
            self.book = ReservationBook(self.state)
            self.book.on_deadline = book.on_deadline
            self.book.carry_requeues(book)
            self._running.clear()
            self._verdicts.clear()
            for gang in self.gangs.values():
                gang.plans.clear()
                gang.slots.clear()
                gang.unresolvable = False  # asked again against the new cluster
                gang.pending_object = None
            external = [self.pods[k] for k in self.external if k in self.pods]
            self.external.clear()
            self.overcommitted.clear()
            for rec in external:
                self._account_external(rec)
            for ledger_key, holding in old.holdings.items():
                gang = self.gangs.get(_gang_key_of(ledger_key))
                if ledger_key.startswith(EXTERNAL_PREFIX) or gang is None:
                    continue
                members = tuple(
                    replace(m, node_index=compiled.node_index[m.node])
                    for m in holding.placement.members
                    if m.node in compiled.node_index and _fits_shape(compiled, m)
                )
                ttl = holding.expires_at_s - now if math.isfinite(holding.expires_at_s) else None
                self._hold(
                    gang,
                    replace(holding.placement, members=members),
                    holding.bound_members & {m.member for m in members},
                    ttl,
                )
            for gang in self.gangs.values():
                self._reindex(gang)

    def _recover_plan(self, gang: GangRecord, rec: PodRecord) -> bool:
        """A pod Phalanx bound whose place is not in the ledger: while recovering after a
        restart, re-reserve its gang's whole plan (the other ranks' pods are observed next);
        otherwise, or if the plan no longer fits, hold this pod's own part of it. False when
        the pod carries no Phalanx plan for this node."""
        ann = rec.pod["metadata"].get("annotations") or {}
        text = ann.get(keys.GANG_PLAN)
        if not text or ann.get(keys.GANG_KEY) != gang.key:
            return False
        try:
            ledger_key, members = decode_plan(text, self.compiled, gang.key)
        except PlanFormatError as exc:
            log.warning("pod %s: %s", rec.key, exc)
            return False
        mine = [m for m in members if m.member == rec.name and m.node == rec.node]
        if not mine:
            return False
        gang.next_extra = max(gang.next_extra, _extra_number(ledger_key) + 1)
        if self._recovering and ledger_key not in self.state.holdings:
            # ranks whose pods are already held (their own plan, or bound by someone else
            # and accounted as such) keep that place: reserving them again counts them twice
            held = {p.name for p in gang.members.values() if p.node and p is not rec}
            plan = tuple(m for m in members if m.member not in gang.slots and m.member not in held)
            placement = Placement(ledger_key, plan, NODE_LEVEL, "", CostBreakdown())
            if self._hold(gang, placement, {rec.name}, self._ttl(gang)):
                return True
        own = Placement(gang.new_extra_key(), tuple(mine), NODE_LEVEL, rec.node, CostBreakdown())
        return self._hold(gang, own, {rec.name}, None)

    def _account_external(self, rec: PodRecord) -> None:
        """A pod bound by someone else: take what it uses so that no plan lands on top of it.
        Which GPUs its device plugin chose is unknown; the lowest free indices stand for them."""
        index = self.compiled.node_index.get(rec.node)
        if rec.key in self.external or rec.request is None or index is None:
            return
        c = self.compiled
        req = rec.request
        free = c.free_gpus(index)
        gpus = free[: req.gpus]
        cpu = min(req.cpu_milli, int(c.cpu_free_milli[index]))
        mem = min(req.memory_mib, int(c.memory_free_mib[index]))
        if len(gpus) < req.gpus or cpu < req.cpu_milli or mem < req.memory_mib:
            self.overcommitted[rec.key] = (
                f"bound to {rec.node} asking {req.gpus} GPUs/{req.cpu_milli}m/"
                f"{req.memory_mib}Mi; only {len(gpus)} GPUs/{cpu}m/{mem}Mi were free"
            )
        member = MemberPlacement(rec.name, rec.node, index, tuple(gpus), MILLI_PER_GPU, cpu, mem)
        placement = Placement(
            EXTERNAL_PREFIX + rec.key, (member,), NODE_LEVEL, rec.node, CostBreakdown()
        )
        self.state.assign(placement, self.clock())
        self.external[rec.key] = placement.gang

    def _cluster_taints(self) -> tuple[str, ...]:
        return tuple(sorted({t for n in self.compiled.cluster.nodes for t in n.taints}))


def _recovery_order(pod: dict[str, Any]) -> int:
    """Bound pods without a Phalanx plan, then bound pods with one, then unbound pods."""
    if not node_of(pod):
        return 2
    ann = pod["metadata"].get("annotations") or {}
    return 1 if keys.GANG_PLAN in ann else 0
