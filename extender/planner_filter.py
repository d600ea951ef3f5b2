"""The filter path: every decision the planner makes for a filtered pod, through the shared
:class:`~scheduler.cycle.SchedulingCycle` (first plans, late members, re-plans) with the
planner's one :class:`~scheduler.cycle.CycleConfig`, and the waiting reasons it reports.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from phalanx.extender.hints import gang_hints, hints_of
from phalanx.extender.masking import Offer, take_victims, without_nodes
from phalanx.extender.planner_ledger import _service_gpu_s
from phalanx.extender.records import GangRecord, PodRecord
from phalanx.extender.why_not import (
    UNRESOLVABLE,
    FilterDecision,
    reject,
    spec_error_code,
    waiting_text,
)
from phalanx.scheduler.cycle import CycleOutcome, SchedulingCycle
from phalanx.scheduler.gang import Gang, GangSpecError, Member
from phalanx.scheduler.interfaces import QueueContext, reads_attained_service
from phalanx.scheduler.placement import Placement, Unplaceable
from phalanx.scheduler.reasons import Reason
from phalanx.scheduler.running_view import ValuesInPlace
from phalanx.scheduler.state import ClusterState
from phalanx.scheduler.validation import validate_gang_for_cluster

CYCLE_MEMO_S = 1.0
"""How long a cycle's "every gang waits" stands while nothing changes: policies that read the
clock (attained service, preemption's minimum runtime) are asked again at least this often."""


class CycleMemo:
    """The inputs of the last cycle that left every gang waiting, for at most
    :data:`CYCLE_MEMO_S` and never past ``until_s``: a gang held by the permit plugin waits
    until a time, and a filter after it must run a cycle, not be told of the hold again."""

    def __init__(self) -> None:
        self._inputs: tuple[int, ...] | None = None
        self._at_s = 0.0
        self._until_s = math.inf
        self.hits = 0

    def remember(self, inputs: tuple[int, ...], now: float, until_s: float = math.inf) -> None:
        self._inputs, self._at_s, self._until_s = inputs, now, until_s

    def same(self, inputs: tuple[int, ...], now: float) -> bool:
        if (
            inputs != self._inputs
            or not 0 <= now - self._at_s < CYCLE_MEMO_S
            or now >= self._until_s
        ):
            return False
        self.hits += 1
        return True


class FilterMixin:
    """Planning on filter; mixed into :class:`extender.planner.Planner`, whose lock the callers
    hold."""

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
            answer = self._planned_answer(gang, rec, member.node, offer)
            if answer is not None:
                return answer
            self.stats.replans += 1
            holding = self.state.holdings[ledger_key]
            whole = (
                ledger_key == gang.key
                and not holding.bound_members
                and not gang.binding
                and not gang.arrived
            )
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
        mask = self._withheld(offer, rec)
        memo = None if mask.size else self._cycle_inputs()
        if memo is not None and gang.waiting and self._memo.same(memo, now):
            # nothing a cycle reads changed since the last one left every gang waiting
            return reject(offered, gang.waiting, gang.unresolvable)
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
        state = without_nodes(self.state, mask) if mask.size else self.state
        try:
            outcome = self._cycle(state, preempting=True).run(
                pending,
                self._preemption_view(),
                now,
                self.policy_attained(now),
                reserve_ttl_s=self.config.reservation_ttl_s,
            )
        except GangSpecError as exc:
            self._unresolvable(gang, spec_error_code(exc), str(exc))
            return reject(offered, gang.waiting, unresolvable=True)
        if state is not self.state:
            take_victims(self.state, outcome)
        for started, placement in outcome.started:
            self._adopt(self.gangs[started.name], started, placement, now, skip=rec.name)
        self._evict_victims(outcome)
        self._explain(outcome, {g.name: g for g in pending}, gang)
        holds_end_s = self._holds_end_s(outcome, pending, now)
        self._wake_when_holds_end(outcome, holds_end_s, now)
        if memo is not None and not outcome.started and not outcome.preempted and holds_end_s > now:
            # the inputs from before the cycle: a gang it found unresolvable changed them, so
            # the next filter runs a cycle without that gang
            self._memo.remember(memo, now, holds_end_s)
        slot = self._slot(rec)
        if slot is not None:
            answer = self._planned_answer(gang, rec, slot[1].node, offer)
            if answer is not None:
                return answer
            # planned where it cannot go now: placed again among the offered nodes
            self._drop(slot[0], {rec.name})
            return self._plan_extra(gang, rec, offer, now, within_offer=True)
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
            self.decisions.changed(name)

    def _unresolvable(self, gang: GangRecord, code: str, detail: str) -> None:
        """The gang can never be placed as it is: answered in FailedAndUnresolvableNodes and
        left out of cycles until it, its group or the cluster changes."""
        gang.waiting, gang.unresolvable = waiting_text(gang.key, code, detail), True
        GangRecord.changes += 1  # it leaves the cycles: what the gangs behind it see changes

    def _plan_extra(
        self,
        gang: GangRecord,
        rec: PodRecord,
        offer: Offer,
        now: float,
        *,
        within_offer: bool = False,
    ) -> FilterDecision:
        """A member outside the gang's plans (late arrival, re-planned): a one-member gang put
        through the same cycle as first plans (queue admission included: a quota is not
        overrun member by member), preferring the level where the rest of the gang sits;
        ``within_offer`` keeps it to the offered nodes even when the offer is a window."""
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
            validate_gang_for_cluster(single, self.compiled)
        except GangSpecError as exc:
            why = waiting_text(gang.key, spec_error_code(exc), str(exc))
            return reject(offered, why, unresolvable=True)
        mask = offer.withheld_nodes() if within_offer else self._withheld(offer, rec)
        state = without_nodes(self.state, mask) if mask.size else self.state
        outcome = self._cycle(state).run(
            [single],
            ValuesInPlace(self._running),
            now,
            self.policy_attained(now),
            reserve_ttl_s=self.config.reservation_ttl_s,
            also_waiting=self._waiting_objects(),
        )
        if not outcome.started:
            code = outcome.codes.get(single.name, Reason.CAPACITY)
            detail = f"member {rec.name}: {outcome.waiting.get(single.name, 'not placed')}"
            return reject(offered, waiting_text(gang.key, code, detail))
        planned, placement = outcome.started[0]
        self._adopt(gang, planned, placement, now, skip=rec.name)
        node = placement.members[0].node
        answer = self._planned_answer(gang, rec, node, offer)
        return answer or FilterDecision([node] if offer.includes(node) else [])

    def _planned_answer(
        self, gang: GangRecord, rec: PodRecord, node: str, offer: Offer
    ) -> FilterDecision | None:
        """A member with a place on ``node``: pass that node when offered and free, tell the
        member to retry when the node is only missing from this offer (or still being left by
        evicted pods), None when the node is unusable for it and the member must be planned
        again (:meth:`~extender.planner_protocol.ProtocolMixin._planned_node_missing`)."""
        if offer.includes(node) and not self._leaving_on(node):
            return FilterDecision([node])
        why = self._planned_node_missing(rec, node, offer)
        if not why:
            return None
        preempting = self._leaving_on(node) or self._recently_left(node)
        code = Reason.PREEMPTING if preempting else Reason.RESERVED
        return reject(offer.names, waiting_text(gang.key, code, why))

    def _holds_end_s(self, outcome: CycleOutcome, pending: list[Gang], now: float) -> float:
        """When the earliest hold of the permit plugin in ``outcome`` ends: the cycle's answer
        stands until then at most (``inf`` when it held no gang; ``now``, nothing to keep,
        when the plugin does not say when its holds end)."""
        if Reason.LINK_HOLD not in outcome.codes.values():
            return math.inf
        next_change_s = getattr(self.permit, "next_change_s", None)
        if next_change_s is None:
            return now
        ctx = QueueContext(
            now_s=now, state=self.state, running=ValuesInPlace(self._running), pending=pending
        )
        due = next_change_s(ctx)
        return now if due is None else float(due)

    def _wake_when_holds_end(self, outcome: CycleOutcome, holds_end_s: float, now: float) -> None:
        """Note the gangs the cycle held, so that their members are sent back to kube-scheduler
        when the earliest hold ends (:mod:`extender.hold_wakeup`); wake the timer if that is
        sooner than its next wake-up."""
        held = [name for name, code in outcome.codes.items() if code == Reason.LINK_HOLD]
        if not held or not now < holds_end_s < math.inf:
            return
        if self.hold_wakeup.note(held, holds_end_s) and self.book.on_deadline is not None:
            self.book.on_deadline()

    def _cycle_inputs(self) -> tuple[int, ...]:
        """What a cycle's answer depends on besides time: the ledger (and its free
        capacity), and every gang as the cycle would be given it."""
        return (
            id(self.state),
            self.state.changes,
            GangRecord.changes,
            len(self._running),
            self.budgets.changes,
        )

    def _withheld(self, offer: Offer, rec: PodRecord) -> np.ndarray:
        """Nodes the planner must not use for this cycle: those kube-scheduler's filters
        rejected, known only when its offer was complete (a window or the nominated-node pass
        says nothing about the nodes it left out)."""
        if self.offer_is_complete(offer, rec.pod):
            return offer.withheld_nodes()
        return offer.outside[:0]

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

    def _cycle(
        self, state: ClusterState | None = None, *, preempting: bool = False
    ) -> SchedulingCycle:
        """The shared cycle with this planner's one :class:`CycleConfig`, on the live ledger
        or on ``state``, a snapshot with nodes withheld (its started gangs are then held on
        the live ledger by :meth:`_adopt`). Only first plans may preempt (whole gangs, evicted
        by :mod:`extender.planner_evict`); one member placed after its gang's plan never
        evicts a gang. Gangs that did not fit are remembered until the free capacity changes,
        except in a cycle on a snapshot (not the live capacity)."""
        state = self.state if state is None else state
        config = self.cycle_config if preempting else replace(self.cycle_config, preemption=None)
        unplaced = self._unplaced if state is self.state else None
        return SchedulingCycle.from_config(state, self.queue, config, unplaced=unplaced)

    def _place(self, gang: Gang, state: ClusterState) -> Placement | Unplaceable:
        return self._cycle().place(gang, state)

    def policy_attained(self, now: float) -> dict[str, float]:
        """:meth:`attained` when the queue or preemption policy reads it, else nothing (it
        costs a pass over every tracked pod, on each filter)."""
        if not reads_attained_service(self.queue, self.cycle_config.preemption):
            return {}
        return self.attained(now)

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

    def _adopt(
        self, gang: GangRecord, planned: Gang, placement: Placement, now: float, skip: str = ""
    ) -> None:
        """Take on a plan (the cycle has reserved it already, the extra path has not) and
        nominate its members' nodes, all but ``skip`` (the pod being filtered now)."""
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
        self._nominate_plan(gang, ledger_key, skip)
