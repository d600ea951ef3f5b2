"""Whole-gang preemption done by Phalanx itself.

kube-scheduler preempts per node: it deletes the victims on the one node it picks, from a sample
of candidates its own dry run found, so the rest of a victim gang would keep running. Phalanx
instead lets the shared scheduling cycle choose victims exactly as the simulator does (whole
gangs, checked on a copy of the ledger, the preemptor placed where they were), evicts every pod
of every victim gang through the Eviction API (PodDisruptionBudgets apply), and answers
kube-scheduler's preempt verb with no victims. The preemptor's plan is reserved at once; its
members are told to retry until the evicted pods have left their nodes, and bind together then.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

from phalanx.extender.planner_ledger import _gang_key_of
from phalanx.extender.pod_actions import PodRef
from phalanx.extender.why_not import waiting_text
from phalanx.scheduler.cycle import CycleOutcome
from phalanx.scheduler.interfaces import RunningGang
from phalanx.scheduler.reasons import Reason
from phalanx.scheduler.running_view import ValuesInPlace

log = logging.getLogger(__name__)

LEFT_GRACE_S = 5.0
"""How long a node still counts as being left after its last evicted pod was deleted: Phalanx's
watch can see the deletion before kube-scheduler's cache does, and in that gap kube-scheduler's
filters still reject the node for the preemptor, which must not make Phalanx plan it again."""


@dataclass(frozen=True)
class Leaving:
    """An evicted pod that has not gone yet: the node it is on and the gang it makes room for."""

    node: str
    preemptor: str


class EvictionMixin:
    """Mixed into :class:`extender.planner.Planner`, whose lock the callers hold."""

    def _evict_victims(self, outcome: CycleOutcome) -> None:
        """The cycle released the victims' plans from the ledger and reserved the preemptors'
        room; evict the victims' pods and forget the released plans."""
        for decision in outcome.preempted:
            victim_gangs = {_gang_key_of(k) for k in decision.victims}
            pods: dict[str, list[str]] = {}
            for gang_key in sorted(victim_gangs):
                gang = self.gangs.get(gang_key)
                if gang is None:
                    continue
                released = {k for k in decision.victims if _gang_key_of(k) == gang_key}
                for ledger_key in released:
                    self._running.pop(ledger_key, None)
                    gang.plans.discard(ledger_key)
                for rec in gang.members.values():
                    slot_key = gang.slots.get(rec.name)
                    if slot_key in released:
                        del gang.slots[rec.name]
                    if not rec.node:
                        continue
                    if slot_key in released:
                        self.leaving[rec.key] = Leaving(rec.node, decision.preemptor)
                    pods.setdefault(rec.node, []).append(rec.uid)
                    self.actions.evict(
                        PodRef(rec.namespace, rec.name, rec.uid),
                        self.config.eviction_grace_period_s,
                    )
                why = f"evicted to make room for gang {decision.preemptor}"
                gang.waiting = waiting_text(gang.key, Reason.PREEMPTED, why)
                gang.pending_object = None
                self._reindex(gang)
            running = self._running.get(decision.placement.gang)
            if running is not None:
                self.decisions.preempted(running.gang, decision.victims, pods)

    def _preemption_view(self) -> Sequence[RunningGang]:
        """The running plans as a preempting cycle sees them: a plan whose bound pods a
        PodDisruptionBudget would not let Phalanx evict all at once is not evictable (evicted
        part way, the victim would be left partly running)."""
        running = ValuesInPlace(self._running)
        if not self.budgets:
            return running
        view = []
        for entry in running:
            gang = self.gangs.get(_gang_key_of(entry.placement.gang))
            names = {m.member for m in entry.placement.members}
            pods = [
                rec.pod
                for rec in (gang.members.values() if gang is not None else ())
                if rec.node and rec.name in names
            ]
            if pods and self.budgets.refusal(pods):
                entry = replace(entry, evictable=False)
            view.append(entry)
        return view

    def _leaving_on(self, node: str) -> list[str]:
        """Evicted pods still on ``node``."""
        return [key for key, leaving in self.leaving.items() if leaving.node == node]

    def _recently_left(self, node: str) -> bool:
        """Did the last evicted pod on ``node`` go less than :data:`LEFT_GRACE_S` ago
        (kube-scheduler's cache may not have seen it go yet)?"""
        left_s = self.left_s.get(node)
        if left_s is None:
            return False
        if self.clock() - left_s < LEFT_GRACE_S:
            return True
        del self.left_s[node]
        return False

    def _left(self, pod_key: str) -> None:
        """An evicted pod is gone: its node is kube-scheduler's again after a grace."""
        leaving = self.leaving.pop(pod_key, None)
        if leaving is not None:
            self.left_s[leaving.node] = self.clock()

    def eviction_failed(self, pod: PodRef, why: str) -> None:
        """An eviction was refused (a PodDisruptionBudget) or failed: the pod stays, so it holds
        its room again and the preemptor's unbound plan is given up; the preemptor is planned
        again on its next filter."""
        with self.lock:
            leaving = self.leaving.pop(pod.key, None)
            rec = self.pods.get(pod.key)
            if leaving is None or rec is None:
                return
            preemptor = self.gangs.get(leaving.preemptor)
            if preemptor is not None:
                for ledger_key in list(preemptor.plans):
                    holding = self.state.holdings.get(ledger_key)
                    if holding is not None and not holding.bound_members:
                        self._drop(ledger_key, None)
                preemptor.waiting = waiting_text(
                    preemptor.key, Reason.PREEMPTING, f"{why}; planning again"
                )
            if not self._recover_plan(self.gangs[rec.gang_key], rec):
                self._account_external(rec)
