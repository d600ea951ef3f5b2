"""The planner's watch bookkeeping: pods and group objects as they are added, changed and
deleted, the gangs they make up, and each gang as the scheduling cycle sees it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from phalanx.extender.gangs import GroupKind, resolve_gang
from phalanx.extender.hints import DEFAULT_QUEUE, GangHints, gang_hints
from phalanx.extender.planner_ledger import (
    SERVED_KEPT,
    SUCCEEDED,
    _service_gpu_s,
)
from phalanx.extender.planner_protocol import nominated_node_of
from phalanx.extender.podspec import (
    PodSpecError,
    is_terminal,
    member_request,
    namespace_of,
    node_of,
    pod_key,
    uid_of,
)
from phalanx.extender.records import GangRecord, PodRecord, natural_key
from phalanx.extender.why_not import NeverFitsError
from phalanx.scheduler.gang import Gang, GangSpecError, Member
from phalanx.scheduler.interfaces import RuntimeObserver
from phalanx.scheduler.placement import MemberPlacement
from phalanx.scheduler.validation import check_gang_on_cluster


class PodBookMixin:
    """Pods and gangs; mixed into :class:`extender.planner.Planner`, whose lock the callers hold."""

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
        planned = rec is not None and self._slot(rec) is not None
        if rec is not None and (
            rec.gang_key != ref.key or rec.moved(node_of(pod), request, planned)
        ):
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
            changed = True
        else:
            if request != rec.request:
                gang.unresolvable = False
            changed = (
                request != rec.request
                or error != rec.spec_error
                or _placement_inputs(pod) != _placement_inputs(rec.pod)
                or gang.ref != ref
            )
            seen_before = nominated_node_of(rec.pod)
            rec.pod, rec.request, rec.spec_error = rec.updated(pod), request, error
            rec.uid = rec.uid or uid
            self._keep_nomination(rec, seen_before)
        gang.ref = ref
        if changed:
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
        self._left(rec.key)
        external = self.external.pop(rec.key, None)
        if external is not None:
            self.state.release(external)
        self.overcommitted.pop(rec.key, None)
        gang = self.gangs.get(rec.gang_key)
        if gang is None:
            return
        slot = self._slot(rec)
        gang.members.pop(rec.name, None)
        gang.arrived.pop(rec.name, None)
        gang.pending_object = None
        gang.unresolvable = False
        if slot is not None:
            holding = self.state.holdings[slot[0]]
            nothing_bound = (
                not holding.bound_members - {rec.name} and not gang.binding and not gang.arrived
            )
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
        """A completed or deleted gang frees everything; completions teach runtime estimates
        to every policy that learns them (the queue policy, the permit plugin), under the
        gang's own queue: the estimates are kept per queue."""
        started_s = gang.started_s
        if finished and started_s is not None and last.request is not None:
            # the Protocol's own test (isinstance) takes about 10 us a policy; this is the same
            # test: the policy has a record_completion
            observers: list[RuntimeObserver] = [
                p
                for p in (self.queue, self.permit)
                if getattr(p, "record_completion", None) is not None
            ]
            if observers:
                self._teach_runtime(observers, gang, last, max(0.0, self.clock() - started_s))
        for ledger_key in list(gang.plans):
            if ledger_key in self.state.holdings:
                self._drop(ledger_key, None)
        self._unplanned.discard(gang.key)
        self.book.forget(gang.key)
        del self.gangs[gang.key]

    @staticmethod
    def _teach_runtime(
        observers: list[RuntimeObserver], gang: GangRecord, last: PodRecord, runtime_s: float
    ) -> None:
        assert last.request is not None
        hints = gang.hints if gang.hints is not None else GangHints(queue=DEFAULT_QUEUE)
        done = Gang(
            gang.key,
            (Member(last.name, last.request),),
            queue=hints.queue,
            job_class=hints.job_class,
        )
        for observer in observers:
            observer.record_completion(done, runtime_s)

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
        was = gang.key in self._unplanned
        if waiting and gang.key in self.gangs:
            self._unplanned.add(gang.key)
        else:
            self._unplanned.discard(gang.key)
        if was != (gang.key in self._unplanned):
            GangRecord.changes += 1
        self.decisions.changed(gang.key)

    def _pending_object(self, gang: GangRecord) -> Gang:
        """The gang as the cycle sees it: its unplaced pods in rank order."""
        if gang.pending_object is None:
            pods = [p for p in gang.members.values() if not p.node and p.name not in gang.slots]
            if len(pods) > 1:  # most gangs are one plain pod, which needs no ranks
                pods.sort(key=lambda p: natural_key(p.name))
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
                submit_time_s=self.book.queue_time(gang.key, hints.submit_time_s),
                runtime_estimate_s=hints.runtime_estimate_s,
                job_class=hints.job_class,
            )
            obj.validate()
            try:
                check_gang_on_cluster(obj, self.compiled)
            except GangSpecError as exc:
                raise NeverFitsError(str(exc)) from None
            gang.pending_object = obj
        return gang.pending_object


def _placement_inputs(pod: dict[str, Any]) -> tuple[Any, ...]:
    """What a gang's hints are read from besides the request (queue, level, priority)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    return (
        meta.get("annotations"),
        meta.get("labels"),
        spec.get("priority"),
        spec.get("priorityClassName"),
        spec.get("nodeSelector"),
        spec.get("tolerations"),
        spec.get("affinity"),
    )
