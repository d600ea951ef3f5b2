"""The planner's ledger helpers: holding, shrinking and expiring plans, and the plan objects the
policies see. Kept apart so that every change to the ledger goes through these few methods.
"""

from __future__ import annotations

import logging
import math

from phalanx.extender.hints import GangHints
from phalanx.extender.records import GangRecord, PodRecord
from phalanx.scheduler.gang import Gang, Member, MemberRequest
from phalanx.scheduler.interfaces import RunningGang
from phalanx.scheduler.placement import MemberPlacement, Placement
from phalanx.scheduler.state import LedgerError
from phalanx.topology.compiled import CapacityError, CompiledCluster
from phalanx.topology.model import MILLI_PER_GPU

log = logging.getLogger(__name__)

DEFAULT_RESERVATION_TTL_S = 300.0
"""How long a plan waits for all its members to bind; each bind restarts the clock."""
EXTERNAL_PREFIX = "external:"
"""Ledger keys of pods placed by someone else (default binder, before Phalanx ran)."""
UNKNOWN_NODE_REASON = "node is not in Phalanx's topology view (not yet seen, or removed)"
SUCCEEDED = "Succeeded"
SERVED_KEPT = 4096
"""Gangs whose ended pods' service is remembered (the oldest are forgotten first)."""


class LedgerMixin:
    """Plans in the ledger (:class:`scheduler.state.ClusterState`) and the planner's indexes of
    them; mixed into :class:`extender.planner.Planner`, whose lock the callers hold."""

    def _hold(
        self, gang: GangRecord, placement: Placement, bound: set[str], ttl: float | None
    ) -> bool:
        """Take ``placement`` for ``gang`` with ``bound`` members committed (no expiry when
        ``ttl`` is None); False, and nothing taken, when it does not fit."""
        ledger_key = placement.gang
        names = {m.member for m in placement.members}
        if not names:
            return False
        now = self.clock()
        try:
            if ttl is None or names <= bound:
                self.state.assign(placement, now)
            else:
                self.book.reserve(placement, now, ttl)
                for name in bound:
                    self.state.commit(ledger_key, name)
        except (CapacityError, LedgerError) as exc:
            log.warning("plan %s cannot be held: %s", ledger_key, exc)
            return False
        self._track(gang, ledger_key)
        return True

    def _track(self, gang: GangRecord, ledger_key: str) -> None:
        holding = self.state.holdings[ledger_key]
        gang.plans.add(ledger_key)
        for m in holding.placement.members:
            gang.slots[m.member] = ledger_key
        self._running[ledger_key] = RunningGang(
            self._plan_object(gang, holding.placement),
            holding.placement,
            holding.reserved_at_s,
            holding.reserved_at_s + (_estimate(gang.hints) or math.inf),
        )
        gang.pending_object = None
        self._reindex(gang)

    def _drop(self, ledger_key: str, members: set[str] | None) -> None:
        """Give back the whole plan (``members`` None) or only ``members`` of it."""
        holding = self.state.holdings[ledger_key]
        gang = self.gangs.get(_gang_key_of(ledger_key))
        names = {m.member for m in holding.placement.members}
        removed = names if members is None else names & members
        keeps = gang is not None and bool(names - removed)
        if not keeps:
            self.state.release(ledger_key)
        self._running.pop(ledger_key, None)
        if gang is not None:
            gang.plans.discard(ledger_key)
            for name in names:
                if gang.slots.get(name) == ledger_key:
                    del gang.slots[name]
            self._unnominate(gang, removed - holding.bound_members)
        if keeps and gang is not None:  # the rest stays held, on the same deadline
            self.state.shrink(ledger_key, removed, self.clock())
            self._track(gang, ledger_key)
        if gang is not None:
            gang.pending_object = None
            self._reindex(gang)

    def _expire(self, now: float) -> int:
        """Plans past their TTL: nothing bound -> given back; some bound -> shrunk to the bound
        members (the others are planned again when kube-scheduler retries them); a gang given back
        whole queues from now (:class:`scheduler.reservations.ReservationBook`)."""
        expired = 0
        deferred: list[str] = []
        for ledger_key in self.book.due(now):
            holding = self.state.holdings.get(ledger_key)
            if holding is None or holding.expires_at_s > now:
                continue  # given back or held anew by an earlier one of these
            gang = self.gangs.get(_gang_key_of(ledger_key))
            names = {m.member for m in holding.placement.members}
            if gang is not None and gang.binding & names:
                deferred.append(ledger_key)  # a Binding is being posted: expire it after
                continue
            expired += 1
            self._drop(ledger_key, names - holding.bound_members)
            self.decisions.expired(gang, ledger_key, holding)
            if gang is not None:
                gang.waiting = (
                    f"gang {gang.key}: reservation expired before every member bound; "
                    "planning again"
                )
                if not holding.bound_members:
                    # Back of the queue: behind the gangs that waited while it held its place,
                    # not ahead of them again by its creation time.
                    self.book.requeue(gang.key, now)
                    gang.pending_object = None
        for ledger_key in deferred:
            self.book.defer(ledger_key)
        self.stats.reservation_expiries += expired
        return expired

    def _set_expiry(self, ledger_key: str, expires_at_s: float) -> None:
        self.book.restart(ledger_key, expires_at_s)

    def _plan_object(self, gang: GangRecord, placement: Placement) -> Gang:
        """The gang of a plan as policies and the cost see it: its planned members."""
        hints = gang.hints or GangHints()
        members = []
        for m in placement.members:
            pod = gang.members.get(m.member)
            request = pod.request if pod is not None and pod.request else _request_of(m)
            members.append(Member(m.member, request))
        return Gang(
            placement.gang,
            tuple(members),
            priority=hints.priority,
            queue=hints.queue,
            tenant=hints.tenant or gang.ref.namespace,
            nvlink_group=hints.nvlink_group,
            comm_intensity=hints.comm_intensity,
            submit_time_s=hints.submit_time_s,
            runtime_estimate_s=hints.runtime_estimate_s,
            job_class=hints.job_class,
        )

    def _ttl(self, gang: GangRecord) -> float:
        return gang.ref.timeout_s or self.config.reservation_ttl_s


def _gang_key_of(ledger_key: str) -> str:
    return ledger_key.partition("#")[0]


def _extra_number(ledger_key: str) -> int:
    number = ledger_key.partition("#")[2]
    return int(number) if number.isdigit() else 0


def _fits_shape(compiled: CompiledCluster, m: MemberPlacement) -> bool:
    count = compiled.gpu_count[compiled.node_index[m.node]]
    return all(0 <= g < count for g in m.gpus)


def _request_of(m: MemberPlacement) -> MemberRequest:
    if m.gpu_milli >= MILLI_PER_GPU:
        return MemberRequest(gpus=len(m.gpus), cpu_milli=m.cpu_milli, memory_mib=m.memory_mib)
    return MemberRequest(gpu_milli=m.gpu_milli, cpu_milli=m.cpu_milli, memory_mib=m.memory_mib)


def _service_gpu_s(rec: PodRecord, now: float) -> float:
    """GPU-seconds the pod has run since it was bound (0 while pending)."""
    if not rec.node or rec.bound_s is None or rec.request is None:
        return 0.0
    gpus = rec.request.gpus + rec.request.gpu_milli / MILLI_PER_GPU
    return gpus * max(0.0, now - rec.bound_s)


def _estimate(hints: GangHints | None) -> float | None:
    return hints.runtime_estimate_s if hints is not None else None
