"""One gang's state as its group's status and its Events tell it, read from the planner.

Where a gang stands (waiting, planned, bound, running), the reason code from the one vocabulary
(:class:`scheduler.reasons.Reason`) and the message users see, and the counts each PodGroup
dialect writes back (:mod:`extender.group_status`). Read under the planner's lock by the
status reporter's thread, never by the planner itself: a snapshot, so the slow part (the API
calls) runs after the lock is released.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from phalanx.extender.gangs.ref import SINGLETON_SOURCE
from phalanx.extender.planner_views import phase as planner_phase
from phalanx.extender.queue_views import waiting_reason
from phalanx.extender.records import GangRecord, natural_key
from phalanx.extender.why_not import waiting_text
from phalanx.scheduler.reasons import Reason

if TYPE_CHECKING:
    from phalanx.extender.planner import Planner

RUNNING = "Running"
NOT_TRIED = "waiting for a scheduling cycle (kube-scheduler has not offered a member yet)"


class GangPhase(StrEnum):
    WAITING = "waiting"
    """No plan holds its room."""
    PLANNED = "planned"
    """A plan holds its room; fewer than its quorum are bound."""
    BOUND = "bound"
    """At least its quorum is bound to nodes."""
    RUNNING = "running"
    """At least its quorum runs (pods in phase Running)."""


@dataclass(frozen=True)
class PodTarget:
    namespace: str
    name: str
    uid: str
    node: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class GangStatus:
    key: str
    source: str
    """The dialect (``GangRef.source``): which status fields its group has."""
    namespace: str
    name: str
    phase: GangPhase
    code: str
    """A reason code while waiting or planned ('' when placed or not tried yet)."""
    message: str
    quorum: int
    present: int
    bound: int
    running: int
    owners: tuple[str, ...] = ()
    """``namespace/name`` of the members' owners (scheduler-plugins' ``occupiedBy``)."""
    pods: tuple[PodTarget, ...] = ()
    group: Mapping[str, Any] | None = None
    """The group object as last watched (its status carries transition times over)."""


def gang_status(planner: Planner, key: str, *, evicted: bool = False) -> GangStatus | None:
    """The status of gang ``key``; None when the gang is gone or has nothing to report (a pod
    that names no gang, pods placed by another scheduler; ``evicted``: a gang being evicted
    whole, whose bound pods no plan holds any more, is still reported). The caller holds the
    lock."""
    gang = planner.gangs.get(key)
    if gang is None or gang.ref.source == SINGLETON_SOURCE or not gang.members:
        return None
    if not evicted and planner_phase(planner, gang) == "external":
        return None
    ref = gang.ref
    group = _group_object(planner, gang)
    quorum = ref.min_member or len(gang.members)
    bound = sum(1 for p in gang.members.values() if p.node)
    running = sum(1 for p in gang.members.values() if p.node and _pod_phase(p.pod) == RUNNING)
    if running >= quorum:
        now_in, code, message = GangPhase.RUNNING, "", f"{running}/{quorum} members running"
    elif bound >= quorum:
        now_in, code, message = GangPhase.BOUND, "", f"{bound}/{quorum} members bound"
    elif gang.plans:
        now_in, (code, message) = GangPhase.PLANNED, _planned(planner, gang)
    else:
        now_in = GangPhase.WAITING
        code, message = waiting_reason(gang)
        if ref.min_member is None and group is None:
            code = ""  # the group object is not there yet: nothing was decided
        message = message or NOT_TRIED
    pods = tuple(
        PodTarget(p.namespace, p.name, p.uid, p.node)
        for p in sorted(gang.members.values(), key=lambda p: natural_key(p.name))
    )
    return GangStatus(
        key=gang.key,
        source=ref.source,
        namespace=ref.namespace,
        name=ref.name,
        phase=now_in,
        code=code,
        message=message,
        quorum=quorum,
        present=len(gang.members),
        bound=bound,
        running=running,
        owners=_owners(gang),
        pods=pods,
        group=group,
    )


def _planned(planner: Planner, gang: GangRecord) -> tuple[str, str]:
    """The code of a planned gang: its room is still being left by gangs it preempted, its
    members wait at the bind barrier, or its room is simply reserved."""
    holding = planner.state.holdings.get(gang.key)
    if holding is None:
        holding = next(
            (planner.state.holdings[k] for k in sorted(gang.plans) if k in planner.state.holdings),
            None,
        )
    where = ""
    if holding is not None:
        p = holding.placement
        where = f" on {', '.join(p.node_names)} ({p.level} {p.domain})"
    if any(leaving.preemptor == gang.key for leaving in planner.leaving.values()):
        code, detail = Reason.PREEMPTING, f"planned{where}; preempted pods are still leaving"
    elif gang.arrived:
        code = Reason.BIND_BARRIER
        detail = f"planned{where}; {len(gang.arrived)} member(s) at the bind barrier"
    else:
        code, detail = Reason.RESERVED, f"planned{where}"
    return code.value, waiting_text(gang.key, code, detail)


def _group_object(planner: Planner, gang: GangRecord) -> Mapping[str, Any] | None:
    return planner.groups.get((gang.ref.source, gang.ref.namespace, gang.ref.name))


def _pod_phase(pod: Mapping[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def _owners(gang: GangRecord) -> tuple[str, ...]:
    owners = set()
    for rec in gang.members.values():
        for owner in (rec.pod.get("metadata") or {}).get("ownerReferences") or ():
            if isinstance(owner, dict) and owner.get("name"):
                owners.add(f"{rec.namespace}/{owner['name']}")
    return tuple(sorted(owners))
