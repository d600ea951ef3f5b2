"""The extender's core, free of HTTP: gang planning, reservations and binding decisions.

A gang is planned whole the first time one of its members is filtered (HiveD's
plan-and-reserve): every quorate gang waiting is put through the shared
:class:`~scheduler.cycle.SchedulingCycle` (queue order, admission, placement engine), the plans
are reserved in the ledger with a TTL, and each member is then sent to the node of its plan.
Every state change happens under one lock; binding posts to the apiserver outside it, so binds
of one gang and filters of others proceed side by side.
"""

from __future__ import annotations

import heapq
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from phalanx.extender import annotations as keys
from phalanx.extender import planner_views, scoring
from phalanx.extender.binding import (
    Binder,
    BindOutcome,
    BindRequest,
    PlanFormatError,
    bind_annotations,
    decode_plan,
)
from phalanx.extender.decision_log import DecisionLog
from phalanx.extender.gangs import GroupKind, resolve_gang
from phalanx.extender.hints import GangHints, gang_hints, hints_of
from phalanx.extender.masking import Offer, OfferedIndex, withheld
from phalanx.extender.podspec import (
    PodSpecError,
    is_terminal,
    member_request,
    namespace_of,
    node_of,
    pod_key,
    started_s,
    uid_of,
)
from phalanx.extender.records import GangRecord, PodRecord, natural_key
from phalanx.extender.why_not import (
    UNRESOLVABLE,
    FilterDecision,
    NeverFitsError,
    Verdicts,
    reject,
    spec_error_code,
    waiting_text,
)
from phalanx.extender.wire import MAX_EXTENDER_PRIORITY
from phalanx.scheduler.cycle import CycleConfig, CycleOutcome, SchedulingCycle
from phalanx.scheduler.gang import Gang, GangSpecError, Member, MemberRequest
from phalanx.scheduler.interfaces import (
    PlacementScorer,
    PreemptionPolicy,
    QueuePolicy,
    RunningGang,
    RuntimeObserver,
)
from phalanx.scheduler.placement import CostBreakdown, MemberPlacement, Placement, Unplaceable
from phalanx.scheduler.reasons import Reason
from phalanx.scheduler.state import ClusterState, HoldingPhase, LedgerError
from phalanx.scheduler.validation import validate_gang_for_cluster
from phalanx.topology.compiled import CapacityError, CompiledCluster
from phalanx.topology.model import MILLI_PER_GPU, NODE_LEVEL, Cluster

log = logging.getLogger(__name__)

DEFAULT_RESERVATION_TTL_S = 300.0
"""How long a plan waits for all its members to bind; each bind restarts the clock."""
EXTERNAL_PREFIX = "external:"
"""Ledger keys of pods placed by someone else (default binder, before Phalanx ran)."""
UNKNOWN_NODE_REASON = "node is not in Phalanx's topology view (not yet seen, or removed)"
SUCCEEDED = "Succeeded"
SERVED_KEPT = 4096
"""Gangs whose ended pods' service is remembered (the oldest are forgotten first)."""


@dataclass(frozen=True)
class PlannerConfig:
    reservation_ttl_s: float = DEFAULT_RESERVATION_TTL_S
    solver: str = "fast"
    time_limit_s: float = 2.0


@dataclass
class PlannerStats:
    """Counters for /metrics and /debug/state."""

    reservation_expiries: int = 0
    binds: int = 0
    bind_failures: int = 0
    replans: int = 0


@dataclass
class _BindTicket:
    gang_key: str
    pod_name: str
    request: BindRequest


class Planner:
    """Transport-free webhook logic; thread-safe (one lock around every state change)."""

    def __init__(
        self,
        cluster: Cluster,
        queue: QueuePolicy,
        *,
        scorer: PlacementScorer | None = None,
        preemption: PreemptionPolicy | None = None,
        config: PlannerConfig | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lock = threading.RLock()
        self.queue = queue
        self.scorer = scorer
        self.preemption = preemption
        self.config = config or PlannerConfig()
        self.clock = clock
        self.state = ClusterState(cluster.compile())
        self.pods: dict[str, PodRecord] = {}
        self.gangs: dict[str, GangRecord] = {}
        self.groups: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.external: dict[str, str] = {}
        """Pod key -> ledger key for pods bound by someone else."""
        self.overcommitted: dict[str, str] = {}
        """Pod key -> what could not be accounted (a bound pod larger than the free space)."""
        self.stats = PlannerStats()
        self._running: dict[str, RunningGang] = {}
        """Ledger key -> the plan as queue and preemption policies see it."""
        self._unplanned: set[str] = set()
        """Gangs with no plan and a pod waiting for one."""
        self._taint_keys = self._cluster_taints()
        self._recovering = False
        self._offered = OfferedIndex(self.compiled)
        self._expiries: list[tuple[float, str]] = []
        """(expires_at_s, ledger key) of reservations; stale entries are skipped."""
        self._deadline_listener: Callable[[], None] | None = None
        self._verdicts = Verdicts()
        """Whether gangs that did not fit ever could (asked once per version of a gang)."""
        self.decisions = DecisionLog(clock)
        self.cycle_config = CycleConfig(
            solver=self.config.solver,
            time_limit_s=self.config.time_limit_s,
            scorer=scorer,
            preemption=preemption,
        )
        """The one configuration of every decision: plans, late members, preemption."""
        self.served_gpu_s: dict[str, float] = {}
        """Gang key -> GPU-seconds its pods ran before they ended without success (a preempted
        gang recreated later keeps its attained service, as Tiresias assumes)."""

    @property
    def compiled(self) -> CompiledCluster:
        return self.state.compiled

    # ================================================================== cluster objects
    def observe_pod(self, pod: dict[str, Any]) -> None:
        """A pod was added or changed (watch event)."""
        with self.lock:
            self._observe(pod)

    def forget_pod(self, namespace: str, name: str, uid: str = "") -> None:
        """A pod was deleted: give back what it held."""
        with self.lock:
            rec = self.pods.get(f"{namespace}/{name}")
            if rec is not None and (not uid or not rec.uid or rec.uid == uid):
                self._forget(rec, finished=False)

    def observe_group(self, kind: GroupKind, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        with self.lock:
            self.groups[(kind.source, namespace, meta["name"])] = obj
            self._refresh_refs(namespace)

    def forget_group(self, kind: GroupKind, namespace: str, name: str) -> None:
        with self.lock:
            self.groups.pop((kind.source, namespace, name), None)
            self._refresh_refs(namespace)

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
            self._expiries.clear()
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

    # ================================================================== verbs
    def filter(self, pod: dict[str, Any], offered: Sequence[str]) -> FilterDecision:
        with self.lock:
            now = self.clock()
            self._expire(now)
            rec = self._observe(pod)
            if rec is None:
                return reject(offered, f"pod {pod_key(pod)} has finished", unresolvable=True)
            offer = self._offered(offered)
            decision = self._filter(rec, offer, now)
            if offer.unknown:
                decision.failed = {
                    **dict.fromkeys(offer.unknown, UNKNOWN_NODE_REASON),
                    **decision.failed,
                }
            return decision

    def prioritize(self, pod: dict[str, Any], offered: Sequence[str]) -> np.ndarray:
        """Integer scores 0..10 aligned with ``offered``: the planned node gets the top score,
        other nodes a lower one from the placement cost the gang would have with this member
        moved there, nodes Phalanx does not know 0."""
        with self.lock:
            rec = self.pods.get(pod_key(pod))
            slot = self._slot(rec) if rec is not None else None
            if slot is None:
                return np.zeros(len(offered), dtype=np.int64)
            ledger_key, member = slot
            running = self._running[ledger_key]
            offer = self._offered(offered)
            alt = scoring.alternative_scores(
                self.compiled, running.gang, running.placement, member, offer.known
            )
            if offer.unknown:
                aligned = np.zeros(len(offered), dtype=np.int64)
                aligned[offer.known_at] = alt
                alt = aligned
            planned = offer.position(member.node_index)
            if planned is not None:
                alt[planned] = MAX_EXTENDER_PRIORITY
            return alt

    def bind(self, namespace: str, name: str, uid: str, node: str, binder: Binder) -> str:
        """Post the pod's Binding; '' on success (also when it was already bound there)."""
        with self.lock:
            ticket = self._begin_bind(namespace, name, uid, node)
            if isinstance(ticket, str):
                return ticket
        try:
            outcome = binder.bind(ticket.request)
        except Exception as exc:  # any binder fault must still clear the in-flight mark
            log.exception("binding %s/%s failed", namespace, name)
            outcome = BindOutcome(False, f"binding {namespace}/{name} failed: {exc}")
        with self.lock:
            error = self._finish_bind(ticket, outcome)
            self.decisions.bound(self.gangs.get(ticket.gang_key), ticket.request, error)
            return error

    def preempt(
        self, pod: dict[str, Any], candidates: Mapping[str, Sequence[str]]
    ) -> dict[str, list[str]]:
        """Victims by candidate node, whole gangs only, from the preemption policy; {} when
        no set of whole gangs makes room (kube-scheduler then preempts nothing)."""
        with self.lock:
            if self.preemption is None:
                return {}
            rec = self._observe(pod)
            if rec is None:
                return {}
            gang = self.gangs[rec.gang_key]
            if self._gate(gang):
                return {}
            try:
                preemptor = self._pending_object(gang)
            except GangSpecError:
                return {}
            now = self.clock()
            decision, _ = self._cycle(preempting=True).plan_preemption(
                preemptor, list(self._running.values()), now, self.attained(now)
            )
            if decision is None:
                return {}
            victims: dict[str, list[str]] = {}
            for ledger_key in decision.victims:
                holding = self.state.holdings.get(ledger_key)
                victim_gang = self.gangs.get(_gang_key_of(ledger_key))
                if holding is None or victim_gang is None:
                    continue
                for m in holding.placement.members:
                    victim = victim_gang.members.get(m.member)
                    if victim is not None and victim.node in candidates:
                        victims.setdefault(victim.node, []).append(victim.uid)
            self.decisions.preempted(preemptor, decision.victims, victims)
            return victims

    def expire(self) -> int:
        """Give back reservations whose TTL passed; returns how many."""
        with self.lock:
            return self._expire(self.clock())

    def next_expiry_s(self) -> float | None:
        """When the earliest reservation expires (by ``clock``), None when none is held.
        Entries superseded by a later deadline (a bind restarts the clock) are dropped here."""
        with self.lock:
            heap = self._expiries
            while heap:
                due, ledger_key = heap[0]
                holding = self.state.holdings.get(ledger_key)
                if holding is not None and holding.expires_at_s == due:
                    return due
                heapq.heappop(heap)
            return None

    def set_deadline_listener(self, listener: Callable[[], None] | None) -> None:
        """``listener`` is called (with the planner lock held) whenever a reservation gets a
        deadline, so that a timer sleeping towards a later one wakes up
        (:class:`extender.expiry_timer.ExpiryTimer`)."""
        with self.lock:
            self._deadline_listener = listener

    # ================================================================== filter internals
    def _filter(self, rec: PodRecord, offer: Offer, now: float) -> FilterDecision:
        gang = self.gangs[rec.gang_key]
        if rec.node:
            return FilterDecision([rec.node] if offer.includes(rec.node) else [])
        if rec.spec_error:
            why = waiting_text(gang.key, Reason.INVALID_SPEC, rec.spec_error)
            return reject(offer.names, why, unresolvable=True)
        slot = self._slot(rec)
        if slot is not None:
            ledger_key, member = slot
            if offer.includes(member.node):
                return FilterDecision([member.node])
            self.stats.replans += 1
            holding = self.state.holdings[ledger_key]
            whole = ledger_key == gang.key and not holding.bound_members and not gang.binding
            self._drop(ledger_key, None if whole else {rec.name})
        if gang.plans:
            return self._plan_extra(gang, rec, offer, now)
        return self._plan_gangs(gang, rec, offer, now)

    def _plan_gangs(
        self, gang: GangRecord, rec: PodRecord, offer: Offer, now: float
    ) -> FilterDecision:
        """Run one scheduling cycle over every quorate gang without a plan."""
        offered = offer.names
        reason = self._gate(gang)
        if reason:
            return reject(offered, reason, gang.unresolvable)
        pending: list[Gang] = []
        for key in sorted(self._unplanned):
            other = self.gangs[key]
            if other is not gang and self._gate(other):
                continue
            try:
                pending.append(self._pending_object(other))
            except GangSpecError as exc:
                self._unresolvable(other, spec_error_code(exc), str(exc))
        if gang.unresolvable:
            return reject(offered, gang.waiting, unresolvable=True)
        try:
            with withheld(self.compiled, offer.withheld_nodes()):
                outcome = self._cycle().run(
                    pending,
                    list(self._running.values()),
                    now,
                    self.attained(now),
                    reserve_ttl_s=self.config.reservation_ttl_s,
                )
        except GangSpecError as exc:
            self._unresolvable(gang, spec_error_code(exc), str(exc))
            return reject(offered, gang.waiting, unresolvable=True)
        for started, placement in outcome.started:
            self._adopt(self.gangs[started.name], started, placement, now)
        self._explain(outcome, {g.name: g for g in pending}, gang)
        slot = self._slot(rec)
        if slot is not None:
            return FilterDecision([slot[1].node])
        if gang.plans:
            return self._plan_extra(gang, rec, offer, now)
        return reject(offered, gang.waiting or f"gang {gang.key}: not placed", gang.unresolvable)

    def _explain(
        self, outcome: CycleOutcome, pending: dict[str, Gang], filtered: GangRecord
    ) -> None:
        """Each gang the cycle left waiting gets its reason, code first. One that did not fit
        is asked whether it ever could (answered unresolvable, and left out of later cycles,
        when not); the filtered gang's capacity shortage is told apart from fragmentation on
        the whole cluster, beyond the nodes kube-scheduler offered."""
        for name, why in outcome.waiting.items():
            gang = self.gangs.get(name)
            if gang is None:
                continue
            code, detail = outcome.codes.get(name, ""), why
            result = outcome.unplaced.get(name)
            if result is not None and name in pending:
                code, detail = self._verdicts.classify(
                    pending[name], result, self.compiled, scattered=gang is filtered
                )
            if code in UNRESOLVABLE:
                self._unresolvable(gang, code, detail)
            else:
                gang.waiting = waiting_text(name, code, detail) if code else f"gang {name}: {why}"

    def _unresolvable(self, gang: GangRecord, code: str, detail: str) -> None:
        """The gang can never be placed as it is: answered in FailedAndUnresolvableNodes and
        left out of cycles until it, its group or the cluster changes."""
        gang.waiting, gang.unresolvable = waiting_text(gang.key, code, detail), True

    def _plan_extra(
        self, gang: GangRecord, rec: PodRecord, offer: Offer, now: float
    ) -> FilterDecision:
        """A member outside the gang's plans (late arrival, re-planned): a one-member gang put
        through the same cycle as first plans (queue admission included: a quota is not
        overrun member by member), preferring the level where the rest of the gang sits."""
        offered = offer.names
        if rec.request is None:
            why = waiting_text(gang.key, Reason.INVALID_SPEC, rec.spec_error)
            return reject(offered, why, unresolvable=True)
        try:
            hints = gang_hints(gang.ref, [rec], self.compiled)
        except GangSpecError as exc:
            why = waiting_text(gang.key, Reason.INVALID_SPEC, str(exc))
            return reject(offered, why, unresolvable=True)
        primary = self.state.holdings.get(gang.key)
        single = Gang(
            gang.new_extra_key(),
            (Member(rec.name, rec.request),),
            priority=hints.priority,
            queue=hints.queue,
            tenant=hints.tenant,
            required_level=hints.required_level,
            preferred_level=hints.preferred_level or (primary.placement.level if primary else None),
            comm_intensity=hints.comm_intensity,
            submit_time_s=hints.submit_time_s,
        )
        try:
            single.validate()
            validate_gang_for_cluster(single, self.compiled)
        except GangSpecError as exc:
            why = waiting_text(gang.key, spec_error_code(exc), str(exc))
            return reject(offered, why, unresolvable=True)
        with withheld(self.compiled, offer.withheld_nodes()):
            outcome = self._cycle().run(
                [single],
                list(self._running.values()),
                now,
                self.attained(now),
                reserve_ttl_s=self.config.reservation_ttl_s,
                also_waiting=self._waiting_objects(),
            )
        if not outcome.started:
            code = outcome.codes.get(single.name, Reason.CAPACITY)
            detail = f"member {rec.name}: {outcome.waiting.get(single.name, 'not placed')}"
            return reject(offered, waiting_text(gang.key, code, detail))
        planned, placement = outcome.started[0]
        self._adopt(gang, planned, placement, now)
        return FilterDecision([placement.members[0].node])

    def _waiting_objects(self) -> list[Gang]:
        """The other gangs waiting for a plan, as far as they can be read (what admission
        sees in a full cycle)."""
        objects = []
        for key in sorted(self._unplanned):
            other = self.gangs[key]
            if self._gate(other):
                continue
            try:
                objects.append(self._pending_object(other))
            except GangSpecError:
                continue
        return objects

    def _gate(self, gang: GangRecord) -> str:
        """Why the gang may not be planned yet ('' when it may): its group object is missing
        or broken, fewer than its quorum of pods exist, or a member's spec is unreadable."""
        ref = gang.ref
        if ref.min_member is None:
            return ref.problem
        if gang.unresolvable:
            return gang.waiting
        present = len(gang.members)
        if present < ref.min_member:
            detail = f"{present}/{ref.min_member} members present"
            return waiting_text(gang.key, Reason.WAITING_FOR_MEMBERS, detail)
        bad = next((p for p in gang.members.values() if p.spec_error), None)
        if bad is not None:
            return waiting_text(gang.key, Reason.INVALID_SPEC, bad.spec_error)
        return ""

    def _cycle(self, *, preempting: bool = False) -> SchedulingCycle:
        """The shared cycle with this planner's one :class:`CycleConfig`. Filter runs carry no
        preemption policy: in the extender kube-scheduler evicts, through the preempt verb
        (:meth:`SchedulingCycle.plan_preemption`)."""
        config = self.cycle_config if preempting else replace(self.cycle_config, preemption=None)
        return SchedulingCycle.from_config(self.state, self.queue, config)

    def _place(self, gang: Gang, state: ClusterState) -> Placement | Unplaceable:
        return self._cycle().place(gang, state)

    def attained(self, now: float) -> dict[str, float]:
        """Attained service (GPU-seconds) as the queue and preemption policies read it, from
        the bound pods' run time: by gang key for waiting gangs (service of ended pods kept in
        :attr:`served_gpu_s` included), by ledger key for plans with bound members."""
        attained: dict[str, float] = {}
        for gang in self.gangs.values():
            total = self.served_gpu_s.get(gang.key, 0.0)
            for rec in gang.members.values():
                service = _service_gpu_s(rec, now)
                if service:
                    total += service
                    ledger_key = gang.slots.get(rec.name)
                    if ledger_key is not None:
                        attained[ledger_key] = attained.get(ledger_key, 0.0) + service
            if total:
                attained[gang.key] = max(attained.get(gang.key, 0.0), total)
        return attained

    def _adopt(self, gang: GangRecord, planned: Gang, placement: Placement, now: float) -> None:
        """Take on a plan: the cycle has reserved it already, the extra path has not."""
        gang.hints = hints_of(planned)
        ledger_key = placement.gang
        ttl = self._ttl(gang)
        if ledger_key in self.state.holdings:
            self._set_expiry(ledger_key, now + ttl)
            self._track(gang, ledger_key)
        else:
            self._hold(gang, placement, set(), ttl)
        gang.waiting = ""
        self.decisions.planned(gang, placement)

    # ================================================================== bind internals
    def _begin_bind(self, namespace: str, name: str, uid: str, node: str) -> _BindTicket | str:
        key = f"{namespace}/{name}"
        rec = self.pods.get(key)
        if rec is None:
            return f"pod {key} is unknown to Phalanx (never filtered, or deleted)"
        if uid and rec.uid and uid != rec.uid:
            return f"pod {key}: UID {uid} does not match the pod Phalanx knows ({rec.uid})"
        if node not in self.compiled.node_index:
            return f"node {node!r}: {UNKNOWN_NODE_REASON}"
        if rec.node:
            return "" if rec.node == node else f"pod {key} is already bound to node {rec.node!r}"
        gang = self.gangs[rec.gang_key]
        if name in gang.binding:
            return f"pod {key}: a bind is already in progress"
        slot = self._slot(rec)
        if slot is None:
            # e.g. Phalanx restarted between this pod's filter and its bind: plan it now
            decision = self._filter(rec, Offer.resolve(self.compiled, [node]), self.clock())
            slot = self._slot(rec)
            if slot is None or decision.passing != [node]:
                why = {**decision.failed, **decision.unresolvable}.get(node, "not placed")
                return f"pod {key} cannot be bound to {node!r}: {why}"
        ledger_key, member = slot
        if member.node != node:
            return f"pod {key} is planned on node {member.node!r}, not {node!r}"
        placement = self.state.holdings[ledger_key].placement
        annotations = bind_annotations(self.compiled, gang.key, placement, member)
        gang.binding.add(name)
        return _BindTicket(
            gang.key, name, BindRequest(namespace, name, uid or rec.uid, node, annotations)
        )

    def _finish_bind(self, ticket: _BindTicket, outcome: BindOutcome) -> str:
        gang = self.gangs.get(ticket.gang_key)
        if gang is not None:
            gang.binding.discard(ticket.pod_name)
        rec = self.pods.get(f"{ticket.request.namespace}/{ticket.pod_name}")
        if not outcome.ok:
            self.stats.bind_failures += 1
            if rec is not None and outcome.bound_node and not rec.node:
                self._mark_bound(rec, outcome.bound_node)
            return outcome.error
        self.stats.binds += 1
        if rec is not None and not rec.node:
            meta = rec.pod.setdefault("metadata", {})
            meta["annotations"] = {**(meta.get("annotations") or {}), **ticket.request.annotations}
            self._mark_bound(rec, ticket.request.node)
        return ""

    def _mark_bound(self, rec: PodRecord, node: str) -> None:
        """The pod is on ``node``: commit its place in its plan, or account for it as placed
        by someone else when it landed elsewhere."""
        rec.node = node
        rec.bound_s = started_s(rec.pod, self.clock())
        gang = self.gangs[rec.gang_key]
        slot = self._slot(rec)
        if slot is not None and slot[1].node == node:
            self.state.commit(slot[0], rec.name)
            self._set_expiry(slot[0], self.clock() + self._ttl(gang))
            if gang.started_s is None:
                gang.started_s = self.clock()
            self._reindex(gang)
            return
        if slot is not None:
            self._drop(slot[0], {rec.name})
        if not self._recover_plan(gang, rec):
            self._account_external(rec)
        self._reindex(gang)

    # ================================================================== pods and gangs
    def _observe(self, pod: dict[str, Any]) -> PodRecord | None:
        """Record a pod; None for a finished one (which gives back what it held)."""
        key = pod_key(pod)
        rec = self.pods.get(key)
        uid = uid_of(pod)
        if rec is not None and uid and rec.uid and uid != rec.uid:
            self._forget(rec, finished=False)
            rec = None
        if is_terminal(pod):
            if rec is not None:
                phase = (pod.get("status") or {}).get("phase")
                self._forget(rec, finished=phase == SUCCEEDED)
            return None
        ref = resolve_gang(pod, self._lookup)
        try:
            request, error = member_request(pod, self._taint_keys), ""
        except PodSpecError as exc:
            request, error = None, str(exc)
        if rec is not None and (rec.gang_key != ref.key or rec.moved(node_of(pod), request)):
            self._forget(rec, finished=False)
            rec = None
        gang = self.gangs.get(ref.key)
        if gang is None:
            gang = self.gangs[ref.key] = GangRecord(ref, first_seen_s=self.clock())
        if rec is None:
            rec = PodRecord(
                key, namespace_of(pod), pod["metadata"]["name"], uid, ref.key, pod, request, error
            )
            self.pods[key] = rec
            gang.members[rec.name] = rec
            gang.unresolvable = False  # a new member: whether the gang can fit is asked again
        else:
            if request != rec.request:
                gang.unresolvable = False
            rec.pod, rec.request, rec.spec_error = pod, request, error
            rec.uid = rec.uid or uid
        gang.ref = ref
        gang.pending_object = None
        node = node_of(pod)
        if node and node != rec.node:
            self._mark_bound(rec, node)
        self._reindex(gang)
        return rec

    def _forget(self, rec: PodRecord, finished: bool) -> None:
        service = _service_gpu_s(rec, self.clock())
        if service and not finished:
            served = self.served_gpu_s
            served[rec.gang_key] = served.pop(rec.gang_key, 0.0) + service
            while len(served) > SERVED_KEPT:
                del served[next(iter(served))]
        elif finished:
            self.served_gpu_s.pop(rec.gang_key, None)
        self.pods.pop(rec.key, None)
        external = self.external.pop(rec.key, None)
        if external is not None:
            self.state.release(external)
        self.overcommitted.pop(rec.key, None)
        gang = self.gangs.get(rec.gang_key)
        if gang is None:
            return
        slot = self._slot(rec)
        gang.members.pop(rec.name, None)
        gang.pending_object = None
        gang.unresolvable = False
        if slot is not None:
            holding = self.state.holdings[slot[0]]
            nothing_bound = not holding.bound_members - {rec.name} and not gang.binding
            if slot[0] == gang.key and nothing_bound and not rec.node:
                self._drop(slot[0], None)
                gang.waiting = f"gang {gang.key}: member {rec.name} was deleted; planning again"
            else:
                self._drop(slot[0], {rec.name})
        if not gang.members:
            self._gang_done(gang, rec, finished)
        else:
            self._reindex(gang)

    def _gang_done(self, gang: GangRecord, last: PodRecord, finished: bool) -> None:
        """A completed or deleted gang frees everything; completions teach runtime estimates."""
        if finished and gang.started_s is not None and isinstance(self.queue, RuntimeObserver):
            runtime_s = max(0.0, self.clock() - gang.started_s)
            if last.request is not None:
                done = Gang(gang.key, (Member(last.name, last.request),))
                self.queue.record_completion(done, runtime_s)
        for ledger_key in list(gang.plans):
            if ledger_key in self.state.holdings:
                self._drop(ledger_key, None)
        self._unplanned.discard(gang.key)
        del self.gangs[gang.key]

    def _refresh_refs(self, namespace: str) -> None:
        """A group object changed: re-resolve the gangs of that namespace's pods."""
        for rec in [r for r in self.pods.values() if r.namespace == namespace]:
            ref = resolve_gang(rec.pod, self._lookup)
            gang = self.gangs.get(rec.gang_key)
            if ref.key == rec.gang_key and gang is not None:
                if gang.ref != ref:
                    gang.ref, gang.unresolvable, gang.pending_object = ref, False, None
            else:
                self._forget(rec, finished=False)
                self._observe(rec.pod)

    def _lookup(self, kind: GroupKind, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.groups.get((kind.source, namespace, name))

    def _slot(self, rec: PodRecord) -> tuple[str, MemberPlacement] | None:
        gang = self.gangs.get(rec.gang_key)
        ledger_key = gang.slots.get(rec.name) if gang is not None else None
        holding = self.state.holdings.get(ledger_key) if ledger_key else None
        if holding is None:
            return None
        for m in holding.placement.members:
            if m.member == rec.name:
                return ledger_key, m
        return None

    def _reindex(self, gang: GangRecord) -> None:
        waiting = not gang.plans and any(
            not p.node and p.name not in gang.slots for p in gang.members.values()
        )
        if waiting and gang.key in self.gangs:
            self._unplanned.add(gang.key)
        else:
            self._unplanned.discard(gang.key)

    def _pending_object(self, gang: GangRecord) -> Gang:
        """The gang as the cycle sees it: its unplaced pods in rank order."""
        if gang.pending_object is None:
            pods = sorted(
                (p for p in gang.members.values() if not p.node and p.name not in gang.slots),
                key=lambda p: natural_key(p.name),
            )
            if not pods:
                raise GangSpecError(f"gang {gang.key}: no member left to place")
            hints = gang_hints(gang.ref, pods, self.compiled)
            quorum = gang.ref.min_member or len(pods)
            obj = Gang(
                gang.key,
                tuple(Member(p.name, p.request) for p in pods if p.request is not None),
                min_members=quorum if quorum < len(pods) else 0,
                priority=hints.priority,
                queue=hints.queue,
                tenant=hints.tenant,
                required_level=hints.required_level,
                preferred_level=hints.preferred_level,
                nvlink_group=hints.nvlink_group,
                comm_intensity=hints.comm_intensity,
                submit_time_s=max(hints.submit_time_s, gang.requeued_s),
                runtime_estimate_s=hints.runtime_estimate_s,
            )
            obj.validate()
            try:
                validate_gang_for_cluster(obj, self.compiled)
            except GangSpecError as exc:
                raise NeverFitsError(str(exc)) from None
            gang.pending_object = obj
        return gang.pending_object

    def _ttl(self, gang: GangRecord) -> float:
        return gang.ref.timeout_s or self.config.reservation_ttl_s

    # ================================================================== ledger helpers
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
                holding = self.state.reserve(placement, now, max(ttl, math.ulp(now)))
                for name in bound:
                    self.state.commit(ledger_key, name)
                self._push_deadline(holding.expires_at_s, ledger_key)
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
        self.state.release(ledger_key)
        self._running.pop(ledger_key, None)
        if gang is not None:
            gang.plans.discard(ledger_key)
            for name in names:
                if gang.slots.get(name) == ledger_key:
                    del gang.slots[name]
        keep = tuple(m for m in holding.placement.members if m.member not in removed)
        if keep and gang is not None:
            now = self.clock()
            ttl = holding.expires_at_s - now if math.isfinite(holding.expires_at_s) else None
            self._hold(
                gang,
                replace(holding.placement, members=keep),
                holding.bound_members - removed,
                ttl,
            )
        if gang is not None:
            gang.pending_object = None
            self._reindex(gang)

    def _expire(self, now: float) -> int:
        """Plans past their TTL: nothing bound -> given back; some bound -> shrunk to the bound
        members (the others are planned again when kube-scheduler retries them). Expiry times
        sit in a heap, so a call costs nothing while none is due."""
        expired = 0
        deferred: list[tuple[float, str]] = []
        while self._expiries and self._expiries[0][0] <= now:
            due, ledger_key = heapq.heappop(self._expiries)
            holding = self.state.holdings.get(ledger_key)
            if holding is None or holding.expires_at_s != due:
                continue
            gang = self.gangs.get(_gang_key_of(ledger_key))
            names = {m.member for m in holding.placement.members}
            if gang is not None and gang.binding & names:
                deferred.append((due, ledger_key))
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
                    gang.requeued_s = now
        for entry in deferred:
            heapq.heappush(self._expiries, entry)
        self.stats.reservation_expiries += expired
        return expired

    def _set_expiry(self, ledger_key: str, expires_at_s: float) -> None:
        holding = self.state.holdings[ledger_key]
        if holding.phase is HoldingPhase.COMMITTED:
            return
        holding.expires_at_s = expires_at_s
        self._push_deadline(expires_at_s, ledger_key)

    def _push_deadline(self, expires_at_s: float, ledger_key: str) -> None:
        heapq.heappush(self._expiries, (expires_at_s, ledger_key))
        if self._deadline_listener is not None:
            self._deadline_listener()

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
            plan = tuple(m for m in members if m.member not in gang.slots)
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
        )

    def _cluster_taints(self) -> tuple[str, ...]:
        return tuple(sorted({t for n in self.compiled.cluster.nodes for t in n.taints}))

    # ================================================================== read-only views
    def snapshot(self) -> dict[str, Any]:
        """Gangs, plans and free capacity for /debug/state."""
        return planner_views.snapshot(self)

    def gauges(self) -> dict[str, float]:
        """Gang counts by phase and GPU allocation, for /metrics."""
        return planner_views.gauges(self)


def _recovery_order(pod: dict[str, Any]) -> int:
    """Bound pods without a Phalanx plan, then bound pods with one, then unbound pods."""
    if not node_of(pod):
        return 2
    ann = pod["metadata"].get("annotations") or {}
    return 1 if keys.GANG_PLAN in ann else 0


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
