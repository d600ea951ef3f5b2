"""A gang's status in its PodGroup's own fields, one renderer per dialect.

Operators of each ecosystem read status where their tools look: scheduler-plugins'
``status.phase`` (Pending, Scheduling, Scheduled, Running), ``scheduled``, ``running``,
``occupiedBy`` and ``scheduleStartTime``; Volcano's ``status.phase`` (Pending, Inqueue, Running)
and ``conditions`` (``Unschedulable``, ``Scheduled``) with the reason and its message; the native
``scheduling.k8s.io`` PodGroup's ``metav1.Condition`` list: ``PodGroupInitiallyScheduled``
(``Unschedulable`` or ``Scheduled``, never set back to False once True, as kube-scheduler
does), ``DisruptionTarget`` (``PreemptionByScheduler``) for a preempted gang, and
``phalanx.io/Waiting`` whose reason is Phalanx's code.

A condition keeps its ``lastTransitionTime`` while its status does not change (read from the
group as last watched), so an unchanged gang renders the same body and no patch is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from phalanx.extender.gang_status import GangPhase, GangStatus
from phalanx.extender.gangs import native, scheduler_plugins, volcano
from phalanx.scheduler.reasons import Reason

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
"""Built-in types only: merges ``conditions`` by type, so kube-scheduler's own stay."""
MAX_MESSAGE = 32768
"""``metav1.Condition.message`` limit."""
WAITING_CONDITION = "phalanx.io/Waiting"
INITIALLY_SCHEDULED = "PodGroupInitiallyScheduled"
DISRUPTION_TARGET = "DisruptionTarget"
PENDING_REASON = "Pending"
BOUND_REASON = "Bound"

SCHEDULER_PLUGINS_PHASES = {
    GangPhase.WAITING: "Pending",
    GangPhase.PLANNED: "Scheduling",
    GangPhase.BOUND: "Scheduled",
    GangPhase.RUNNING: "Running",
}
VOLCANO_PHASES = {
    GangPhase.WAITING: "Pending",
    GangPhase.PLANNED: "Inqueue",
    GangPhase.BOUND: "Running",
    GangPhase.RUNNING: "Running",
}
"""Volcano's scheduler calls a group Running once its quorum is allocated (bound)."""


@dataclass(frozen=True)
class GroupPatch:
    """A status patch for one group object."""

    source: str
    namespace: str
    name: str
    content_type: str
    body: dict[str, Any]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.source, self.namespace, self.name)


def group_patch(status: GangStatus, now: str) -> GroupPatch | None:
    """The patch that writes ``status`` into the gang's group (``now``: RFC 3339), or None when
    the gang has no group object or the group already says it all."""
    group = status.group
    if group is None:
        return None
    current = group.get("status") or {}
    if status.source == scheduler_plugins.KIND.source:
        body, content_type = _scheduler_plugins(status, current, now), MERGE_PATCH
    elif status.source == volcano.KIND.source:
        body, content_type = _volcano(status, current, now), MERGE_PATCH
    elif status.source == native.KIND.source:
        body, content_type = _native(status, group, now), STRATEGIC_MERGE_PATCH
    else:
        return None
    if _already(current, body):
        return None
    return GroupPatch(status.source, status.namespace, status.name, content_type, {"status": body})


def _scheduler_plugins(status: GangStatus, current: Mapping[str, Any], now: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "phase": SCHEDULER_PLUGINS_PHASES[status.phase],
        "scheduled": status.bound,
        "running": status.running,
    }
    if status.owners:
        body["occupiedBy"] = ",".join(status.owners)
    started = current.get("scheduleStartTime")
    if started or status.code != Reason.WAITING_FOR_MEMBERS:
        # scheduling starts once the quorum exists (the coscheduling timeout counts from it)
        body["scheduleStartTime"] = started or now
    return body


def _volcano(status: GangStatus, current: Mapping[str, Any], now: str) -> dict[str, Any]:
    old = _conditions(current)
    waiting = status.phase is GangPhase.WAITING
    placed = status.phase in (GangPhase.BOUND, GangPhase.RUNNING)
    conditions = [
        _condition(
            "Unschedulable",
            waiting,
            _reason(status),
            status.message,
            now,
            old,
        )
    ]
    if placed:
        conditions.append(_condition("Scheduled", True, BOUND_REASON, status.message, now, old))
    return {
        "phase": VOLCANO_PHASES[status.phase],
        "running": status.running,
        "conditions": conditions,
    }


def _native(status: GangStatus, group: Mapping[str, Any], now: str) -> dict[str, Any]:
    current = group.get("status") or {}
    old = _conditions(current)
    generation = int((group.get("metadata") or {}).get("generation") or 0)
    placed = status.phase in (GangPhase.BOUND, GangPhase.RUNNING)
    waiting = status.phase is GangPhase.WAITING
    conditions = [_condition(WAITING_CONDITION, waiting, _reason(status), status.message, now, old)]
    initially = old.get(INITIALLY_SCHEDULED, {})
    if initially.get("status") != "True":
        reason = "Scheduled" if placed else "Unschedulable"
        conditions.append(_condition(INITIALLY_SCHEDULED, placed, reason, status.message, now, old))
    if status.code == Reason.PREEMPTED:
        conditions.append(
            _condition(DISRUPTION_TARGET, True, "PreemptionByScheduler", status.message, now, old)
        )
    for condition in conditions:
        condition["observedGeneration"] = generation
    return {"conditions": conditions}


def _reason(status: GangStatus) -> str:
    """A condition's reason: the code, ``Bound`` once placed, ``Pending`` before any cycle."""
    if status.phase in (GangPhase.BOUND, GangPhase.RUNNING):
        return BOUND_REASON
    return status.code or PENDING_REASON


def _condition(
    kind: str,
    true: bool,
    reason: str,
    message: str,
    now: str,
    old: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    value = "True" if true else "False"
    before = old.get(kind) or {}
    since = before.get("lastTransitionTime") if before.get("status") == value else None
    return {
        "type": kind,
        "status": value,
        "reason": reason,
        "message": message[:MAX_MESSAGE],
        "lastTransitionTime": since or now,
    }


def _conditions(current: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {
        c["type"]: c
        for c in current.get("conditions") or ()
        if isinstance(c, Mapping) and isinstance(c.get("type"), str)
    }


def _already(current: Mapping[str, Any], body: Mapping[str, Any]) -> bool:
    """Whether the group's status already holds every field of ``body`` (conditions by type)."""
    for key, value in body.items():
        if key != "conditions":
            if current.get(key) != value:
                return False
            continue
        have = _conditions(current)
        for condition in value:
            old = have.get(condition["type"])
            if old is None or any(old.get(k) != v for k, v in condition.items()):
                return False
    return True
