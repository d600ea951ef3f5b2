"""The planner's bind path: a pod's Binding is prepared under the lock, posted outside it, and
its outcome committed to the plan (or accounted as placed elsewhere) under the lock again.
"""

from __future__ import annotations

from dataclasses import dataclass

from phalanx.extender.binding import (
    BindOutcome,
    BindRequest,
    bind_annotations,
    placed_as_planned,
)
from phalanx.extender.masking import Offer
from phalanx.extender.planner_ledger import UNKNOWN_NODE_REASON
from phalanx.extender.podspec import started_s
from phalanx.extender.records import PodRecord, natural_key


@dataclass
class _BindTicket:
    gang_key: str
    pod_name: str
    request: BindRequest


class BindMixin:
    """Binds; mixed into :class:`extender.planner.Planner`."""

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
        everyone = sorted(
            (m for key in gang.plans for m in self.state.holdings[key].placement.members),
            key=lambda m: natural_key(m.member),
        )
        annotations = bind_annotations(self.compiled, gang.key, placement, member, everyone)
        gang.binding.add(name)
        return _BindTicket(
            gang.key, name, BindRequest(namespace, name, uid or rec.uid, node, annotations)
        )

    def _finish_bind(self, ticket: _BindTicket, outcome: BindOutcome) -> str:
        gang = self.gangs.get(ticket.gang_key)
        if gang is not None:
            gang.binding.discard(ticket.pod_name)
            gang.arrived.pop(ticket.pod_name, None)
        rec = self.pods.get(f"{ticket.request.namespace}/{ticket.pod_name}")
        if not outcome.ok:
            self.stats.bind_failures += 1
            if rec is not None and outcome.bound_node and not rec.node:
                self._mark_bound(rec, outcome.bound_node)
            return outcome.error
        self.stats.binds += 1
        if rec is not None and not rec.node:
            # a new dict, never the request's changed in place: the decoder hands the same
            # decoded pod to every request that carries it (extender/args_decoder.py)
            meta = rec.pod.get("metadata") or {}
            annotations = {**(meta.get("annotations") or {}), **ticket.request.annotations}
            rec.pod = {**rec.pod, "metadata": {**meta, "annotations": annotations}}
            self._mark_bound(rec, ticket.request.node)
        return ""

    def _mark_bound(self, rec: PodRecord, node: str) -> None:
        """The pod is on ``node``: commit its place in its plan, or account for it as placed
        by someone else when it landed elsewhere."""
        rec.node = node
        rec.bound_s = started_s(rec.pod, self.clock())
        gang = self.gangs[rec.gang_key]
        slot = self._slot(rec)
        if slot is not None and slot[1].node == node and placed_as_planned(rec.pod, slot[1]):
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
