"""The extender's core, free of HTTP: gang planning, reservations and binding decisions.

A gang is planned whole the first time one of its members is filtered (HiveD's
plan-and-reserve): every quorate gang waiting is put through the shared
:class:`~scheduler.cycle.SchedulingCycle` (queue order, admission, placement engine), the plans
are reserved in the ledger with a TTL, and each member is then sent to the node of its plan.
Every state change happens under one lock; binding posts to the apiserver outside it, so binds
of one gang and filters of others proceed side by side.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from phalanx.extender import planner_views, scoring
from phalanx.extender.binding import Binder, BindOutcome
from phalanx.extender.decision_log import DecisionLog
from phalanx.extender.disruption_budgets import DisruptionBudgets
from phalanx.extender.gangs import GroupKind
from phalanx.extender.hold_wakeup import HoldWakeup
from phalanx.extender.masking import OfferedIndex
from phalanx.extender.planner_bind import BindMixin
from phalanx.extender.planner_evict import EvictionMixin, Leaving
from phalanx.extender.planner_filter import CycleMemo, FilterMixin
from phalanx.extender.planner_ledger import (
    DEFAULT_RESERVATION_TTL_S,
    EXTERNAL_PREFIX,
    UNKNOWN_NODE_REASON,
    LedgerMixin,
)
from phalanx.extender.planner_pods import PodBookMixin
from phalanx.extender.planner_protocol import ProtocolMixin
from phalanx.extender.planner_recovery import RecoveryMixin
from phalanx.extender.pod_actions import PodActions, PodRef, RecordingPodActions
from phalanx.extender.podspec import pod_key
from phalanx.extender.records import GangRecord, PodRecord
from phalanx.extender.rejection import one_entry_rejection
from phalanx.extender.why_not import (
    FilterDecision,
    Verdicts,
    reject,
)
from phalanx.extender.wire import MAX_EXTENDER_PRIORITY
from phalanx.scheduler.cycle import CycleConfig
from phalanx.scheduler.interfaces import (
    PermitPlugin,
    PlacementScorer,
    PreemptionPolicy,
    QueuePolicy,
    RunningGang,
)
from phalanx.scheduler.reservations import ReservationBook
from phalanx.scheduler.state import ClusterState
from phalanx.scheduler.unplaced_cache import UnplacedCache
from phalanx.topology.compiled import CompiledCluster
from phalanx.topology.model import Cluster

__all__ = [
    "DEFAULT_RESERVATION_TTL_S",
    "EXTERNAL_PREFIX",
    "UNKNOWN_NODE_REASON",
    "Planner",
    "PlannerConfig",
    "PlannerStats",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannerConfig:
    reservation_ttl_s: float = DEFAULT_RESERVATION_TTL_S
    solver: str = "fast"
    time_limit_s: float = 2.0
    percentage_of_nodes_to_score: int = 0
    """kube-scheduler's setting (0: its adaptive default): tells a window of the nodes from
    an offer of every feasible node (:func:`extender.planner_protocol.feasible_nodes_to_find`)."""
    eviction_grace_period_s: int | None = None
    """Grace period of the evictions of preempted gangs (None: each pod's own)."""


@dataclass
class PlannerStats:
    """Counters for /metrics and /debug/state."""

    reservation_expiries: int = 0
    binds: int = 0
    bind_failures: int = 0
    replans: int = 0


class Planner(
    FilterMixin,
    ProtocolMixin,
    EvictionMixin,
    BindMixin,
    RecoveryMixin,
    PodBookMixin,
    LedgerMixin,
):
    """Transport-free webhook logic; thread-safe (one lock around every state change). The
    jobs live in mixins, one module each: watch bookkeeping (:mod:`extender.planner_pods`),
    recovery (:mod:`extender.planner_recovery`), the filter path
    (:mod:`extender.planner_filter`), nominations, narrowed offers and the bind barrier
    (:mod:`extender.planner_protocol`), whole-gang eviction (:mod:`extender.planner_evict`),
    binds (:mod:`extender.planner_bind`) and the ledger (:mod:`extender.planner_ledger`); this
    class holds the state and the public verbs. What it asks of pods besides binds
    (nominations, evictions) goes through :attr:`actions`, which never blocks."""

    def __init__(
        self,
        cluster: Cluster,
        queue: QueuePolicy,
        *,
        scorer: PlacementScorer | None = None,
        preemption: PreemptionPolicy | None = None,
        permit: PermitPlugin | None = None,
        config: PlannerConfig | None = None,
        clock: Callable[[], float] = time.time,
        actions: PodActions | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.actions: PodActions = actions if actions is not None else RecordingPodActions()
        self.budgets = DisruptionBudgets()
        """PodDisruptionBudgets from the watch (none without one): gangs they protect are
        no preemption candidates."""
        self.leaving: dict[str, Leaving] = {}
        """Pod key -> evicted pods not gone yet (their room is the preemptor's already)."""
        self.left_s: dict[str, float] = {}
        """Node -> when the last evicted pod on it was deleted (see ``LEFT_GRACE_S``)."""
        self.scheduler_node_count: int | None = None
        """Nodes kube-scheduler knows (every Node, GPU or not); None: this cluster's count."""
        self.queue = queue
        self.scorer = scorer
        self.preemption = preemption
        self.permit = permit
        """Asked by every cycle whether a gang that fits starts now (``link-hold``)."""
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
        self.book = ReservationBook(self.state)
        """Reservations' deadlines and the queue time of gangs whose reservation expired: the
        simulator's rules (:mod:`scheduler.reservations`)."""
        self.hold_wakeup = HoldWakeup()
        """Gangs the permit plugin held, sent back to kube-scheduler when the holds end."""
        self._memo = CycleMemo()
        """The inputs of the last cycle that started and evicted nothing: a filter with the
        same inputs (kube-scheduler retrying a waiting member) is answered from it, never
        after the earliest hold of the permit plugin in that cycle has ended."""
        self._unplaced = UnplacedCache()
        """Gangs that did not fit, until the free capacity changes (kube-scheduler retries
        every waiting member: the answers would be the same)."""
        self._verdicts = Verdicts()
        """Whether gangs that did not fit ever could (asked once per version of a gang)."""
        self.decisions = DecisionLog(clock)
        self.cycle_config = CycleConfig(
            solver=self.config.solver,
            time_limit_s=self.config.time_limit_s,
            scorer=scorer,
            preemption=preemption,
            permit=permit,
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
        """A group was added or changed. Gangs are read from its ``spec`` only, so a change of
        its status alone (Phalanx's own status patches among them) re-reads no pod."""
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        with self.lock:
            key = (kind.source, namespace, meta["name"])
            old = self.groups.get(key)
            self.groups[key] = obj
            if old is None or old.get("spec") != obj.get("spec"):
                self._refresh_refs(namespace)

    def forget_group(self, kind: GroupKind, namespace: str, name: str) -> None:
        with self.lock:
            self.groups.pop((kind.source, namespace, name), None)
            self._refresh_refs(namespace)

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
            if one_entry_rejection(decision.failed, decision.unresolvable) is None:
                decision.names_distinct = offer.distinct_known()
            # unknown names get their own reason where the decision read the offer (a gang
            # waiting for its members is answered without it)
            if offer.resolved and offer.unknown:
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
            if len(offered) == 1 and offered[0] == member.node:
                # the filter's survivor (kube-scheduler itself scores no lone feasible node)
                return np.array([MAX_EXTENDER_PRIORITY], dtype=np.int64)
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
        """Always no victims: kube-scheduler would delete the victims on one node only.

        kube-scheduler calls this when its own filters found no node for the pod (with every
        node full of lower-priority pods the extender's filter is never even asked), so the
        pod's gang is put through the scheduling cycle here as its filter would be, against
        every node: when the cycle preempts, Phalanx evicts the victim gangs whole
        (:mod:`extender.planner_evict`) and the preemptor's plan waits for them to leave."""
        del candidates
        with self.lock:
            now = self.clock()
            self._expire(now)
            rec = self._observe(pod)
            if rec is not None and not rec.node and self._slot(rec) is None:
                self._filter(rec, self._offered(self.compiled.node_names), now)
            return {}

    def expire(self) -> int:
        """Give back reservations whose TTL passed (returns how many), and send back to
        kube-scheduler the members of gangs whose link hold ended (:mod:`extender.hold_wakeup`)."""
        with self.lock:
            now = self.clock()
            expired = self._expire(now)
            self._requeue_held(now)
            return expired

    def next_wake_s(self) -> float | None:
        """When the timer has work next (by ``clock``): the earliest reservation's expiry or
        the end of a link hold; None when there is neither."""
        with self.lock:
            dues = (self.book.next_deadline(), self.hold_wakeup.next_s)
            return min((d for d in dues if d is not None), default=None)

    def _requeue_held(self, now: float) -> None:
        for key in sorted(self.hold_wakeup.take_due(now)):
            gang = self.gangs.get(key)
            if gang is None or gang.plans:
                continue  # gone, or planned since (its members are nominated)
            for rec in gang.members.values():
                if not rec.node:
                    self.actions.requeue(
                        PodRef(rec.namespace, rec.name, rec.uid),
                        f"gang {key}: its link hold ended; planning it again",
                    )

    def set_deadline_listener(self, listener: Callable[[], None] | None) -> None:
        """``listener`` is called (with the planner lock held) whenever a reservation gets a
        deadline, so that a timer sleeping towards a later one wakes up
        (:class:`extender.expiry_timer.ExpiryTimer`)."""
        with self.lock:
            self.book.on_deadline = listener

    # ================================================================== read-only views
    def snapshot(self) -> dict[str, Any]:
        """Gangs, plans and free capacity for /debug/state."""
        return planner_views.snapshot(self)

    def gauges(self) -> dict[str, float]:
        """Gang counts by phase and GPU allocation, for /metrics."""
        return planner_views.gauges(self)
