"""Read-only views of the queues for operators: ``/debug/queue`` (``phalanx status``) and the
per-queue and per-tenant series of ``/metrics``.

Everything here is computed from the planner's records under its lock and changes nothing: the
queue order comes from a copy of the queue policy (policies keep caches and cycle books that an
ordering call updates), so asking for the order never moves a gang.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from phalanx.extender.hints import DEFAULT_QUEUE, GangHints, gang_hints
from phalanx.extender.planner_views import phase
from phalanx.extender.records import GangRecord, natural_key
from phalanx.policies.queue.base import priority_fifo_key
from phalanx.policies.resources import Resources, cluster_capacity, placement_usage
from phalanx.scheduler.gang import Gang, GangSpecError, Member
from phalanx.scheduler.interfaces import QueueContext
from phalanx.scheduler.reasons import Reason
from phalanx.scheduler.state import HoldingPhase
from phalanx.topology.model import MILLI_PER_GPU

if TYPE_CHECKING:
    from phalanx.extender.planner import Planner

_CODE = re.compile(r"\[([a-z_]+)\]")
_BLOCKING_GANG = re.compile(r"blocked gang '([^']+)'")
_WAITING_TENANT = re.compile(r"while tenant '([^']+)' waits")
UNTRIED = "untried"
"""Metrics label of a quorate gang no cycle has looked at yet (no reason code exists: nothing
was decided)."""


@dataclass
class GangView:
    """One gang as operators see it."""

    key: str
    phase: str
    queue: str
    tenant: str
    priority: int
    quorum: int | None
    members: int
    bound: int
    gpus_wanted: float
    """GPUs its unplaced members ask for."""
    gpus_held: float
    """GPUs its plans hold (reserved or bound)."""
    code: str = ""
    message: str = ""
    blocking: str = ""
    """The gang (or tenant) it waits for, where the reason names one."""
    submit_time_s: float = 0.0
    position: int | None = None
    """1-based place among the pending gangs of its queue, in the policy's order."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def gang_views(planner: Planner, *, ordered: bool = True) -> list[GangView]:
    """Every gang with a member Phalanx schedules (single pods bound by others left out),
    pending ones in queue order with their positions (``ordered``; metrics need no order).
    The caller holds the planner's lock."""
    views: list[GangView] = []
    pending: list[tuple[GangView, Gang]] = []
    for gang in planner.gangs.values():
        now_in = phase(planner, gang)
        if now_in == "external":
            continue
        view, obj = _view(planner, gang, now_in)
        views.append(view)
        if now_in == "pending":
            pending.append((view, obj))
    if not ordered:
        return views
    view_of = {id(o): v for v, o in pending}
    by_queue: dict[str, list[GangView]] = {}
    for obj in _ordered(planner, [o for _, o in pending]):
        view = view_of[id(obj)]
        by_queue.setdefault(view.queue, []).append(view)
    for members in by_queue.values():
        for position, view in enumerate(members, start=1):
            view.position = position
    return sorted(views, key=lambda v: (v.phase, v.queue, v.position or 0, v.key))


def queue_report(planner: Planner) -> dict[str, Any]:
    """``/debug/queue``: queues with their pending gangs in order, tenants' usage against
    guarantee or fair share where the queue policy has them, and gangs by phase."""
    with planner.lock:
        views = gang_views(planner)
        queues: dict[str, list[dict[str, Any]]] = {}
        phases: dict[str, list[str]] = {"pending": [], "reserved": [], "bound": []}
        for view in views:
            phases.setdefault(view.phase, []).append(view.key)
            if view.phase == "pending":
                queues.setdefault(view.queue, []).append(view.as_dict())
        c = planner.compiled
        return {
            "policy": getattr(planner.queue, "name", type(planner.queue).__name__),
            "queues": [{"name": q, "pending": queues[q]} for q in sorted(queues)],
            "tenants": tenant_usage(planner, views),
            "queue_quotas": queue_quotas(planner, views),
            "phases": phases,
            "gpus": {
                "total": int(c.gpu_usable.sum()),
                "free": int(c.free_gpu_count.sum()),
            },
        }


def tenant_usage(planner: Planner, views: Iterable[GangView]) -> list[dict[str, Any]]:
    """GPUs each tenant holds and waits for; its dominant share and, under a fair-share
    policy (one with ``entitlement``, e.g. DRF), its fair share."""
    capacity = cluster_capacity(planner.compiled)
    used: dict[str, Resources] = {}
    for running in planner._running.values():
        tenant = running.gang.tenant
        used[tenant] = used.get(tenant, Resources()) + placement_usage(running.placement)
    waiting: dict[str, float] = {}
    for view in views:
        if view.phase == "pending":
            waiting[view.tenant] = waiting.get(view.tenant, 0.0) + view.gpus_wanted
    entitlement = getattr(planner.queue, "entitlement", None)
    ctx = _context(planner, []) if callable(entitlement) else None
    rows = []
    for tenant in sorted(set(used) | set(waiting)):
        mine = used.get(tenant, Resources())
        row: dict[str, Any] = {
            "tenant": tenant,
            "gpus_in_use": round(mine.gpus, 3),
            "gpus_waiting": round(waiting.get(tenant, 0.0), 3),
            "dominant_share": round(mine.dominant_share(capacity), 6),
        }
        if ctx is not None and callable(entitlement):
            row["fair_share"] = round(float(entitlement(tenant, ctx)), 6)
        rows.append(row)
    return rows


def queue_quotas(planner: Planner, views: Iterable[GangView]) -> list[dict[str, Any]]:
    """Under a quota-tree policy: each queue's guaranteed and limit GPUs against its usage."""
    tree = getattr(planner.queue, "tree", None)
    queues = getattr(tree, "queues", None)
    if not isinstance(queues, dict):
        return []
    in_use: dict[str, float] = {}
    for view in views:
        if view.phase != "pending":
            in_use[view.queue] = in_use.get(view.queue, 0.0) + view.gpus_held
    rows = []
    for name, quota in sorted(queues.items()):
        rows.append(
            {
                "queue": name,
                "gpus_in_use": round(in_use.get(name, 0.0), 3),
                "guaranteed_gpus": _finite(quota.guaranteed.gpus),
                "limit_gpus": _finite(quota.limit.gpus),
            }
        )
    return rows


def remedy(view: GangView, free_gpus: int) -> str:
    """What would let a waiting gang run, in one sentence, from its reason code."""
    code = view.code
    if code == Reason.WAITING_FOR_MEMBERS:
        missing = (view.quorum or 0) - view.members
        return f"{missing} more member pod(s) created (quorum {view.quorum})"
    if code == Reason.WAITING_BEHIND:
        return f"the gang ahead of it ({view.blocking or 'see message'}) starting or leaving"
    if code == Reason.CAPACITY:
        return (
            f"{view.gpus_wanted:g} GPUs free at once where its members fit "
            f"({free_gpus} free now): running gangs finishing, or more nodes"
        )
    if code == Reason.FRAGMENTED:
        return "a node with room for a whole member: gangs finishing on partly used nodes"
    if code == Reason.QUOTA:
        who = f" while {view.blocking} waits" if view.blocking else ""
        return f"its tenant or queue falling back within its share{who}"
    if code == Reason.LINK_HOLD:
        return (
            "room for it under faster links (gangs finishing in one unit of its best level), "
            "or its hold running out: it then takes the slower placement"
        )
    if code == Reason.NEVER_FITS:
        return "nothing as it is: fewer or smaller members, another level, or a larger cluster"
    if code == Reason.INVALID_SPEC:
        return "fixing the pod or group spec the message names"
    if code:
        return f"free room that meets its {code} constraint: gangs finishing on the nodes it needs"
    return "a scheduling cycle: kube-scheduler filtering one of its members"


def _view(planner: Planner, gang: GangRecord, now_in: str) -> tuple[GangView, Gang]:
    unplaced = sorted(
        (p for p in gang.members.values() if not p.node and p.name not in gang.slots),
        key=lambda p: natural_key(p.name),
    )
    hints = _hints(planner, gang, unplaced)
    held = 0.0
    for ledger_key in gang.plans:
        holding = planner.state.holdings.get(ledger_key)
        if holding is not None:
            held += placement_usage(holding.placement).gpus
    wanted = sum(p.request.gpu_milli_total for p in unplaced if p.request is not None)
    view = GangView(
        key=gang.key,
        phase=now_in,
        queue=hints.queue or DEFAULT_QUEUE,
        tenant=hints.tenant or gang.ref.namespace,
        priority=hints.priority,
        quorum=gang.ref.min_member,
        members=len(gang.members),
        bound=sum(1 for p in gang.members.values() if p.node),
        gpus_wanted=round(wanted / MILLI_PER_GPU, 3),
        gpus_held=round(held, 3),
        submit_time_s=planner.book.queue_time(gang.key, hints.submit_time_s),
    )
    if now_in == "pending":
        view.code, view.message = waiting_reason(gang)
        found = _BLOCKING_GANG.search(view.message) or _WAITING_TENANT.search(view.message)
        if found:
            view.blocking = found.group(1)
            if found.re is _WAITING_TENANT:
                view.blocking = f"tenant {view.blocking}"
    obj = Gang(
        gang.key,
        tuple(Member(p.name, p.request) for p in unplaced if p.request is not None),
        priority=view.priority,
        queue=view.queue,
        tenant=view.tenant,
        submit_time_s=view.submit_time_s,
        runtime_estimate_s=hints.runtime_estimate_s,
    )
    return view, obj


def _hints(planner: Planner, gang: GangRecord, unplaced: list[Any]) -> GangHints:
    if gang.pending_object is not None:
        o = gang.pending_object
        return GangHints(
            priority=o.priority,
            queue=o.queue,
            tenant=o.tenant,
            submit_time_s=o.submit_time_s,
            runtime_estimate_s=o.runtime_estimate_s,
        )
    if gang.hints is not None and not unplaced:
        return gang.hints
    pods = unplaced or sorted(gang.members.values(), key=lambda p: natural_key(p.name))
    try:
        return gang_hints(gang.ref, pods, planner.compiled)
    except GangSpecError:
        return gang.hints or GangHints()


def waiting_reason(gang: GangRecord) -> tuple[str, str]:
    """The code and message users see in the gang's pod events."""
    ref = gang.ref
    if ref.min_member is None:
        return Reason.INVALID_SPEC.value, ref.problem
    if len(gang.members) < ref.min_member and not gang.unresolvable:
        present = f"{len(gang.members)}/{ref.min_member} members present"
        return Reason.WAITING_FOR_MEMBERS.value, f"gang {gang.key} [waiting_for_members]: {present}"
    found = _CODE.search(gang.waiting)
    return (found.group(1) if found else ""), gang.waiting


def _ordered(planner: Planner, pending: list[Gang]) -> list[Gang]:
    """The pending gangs in the queue policy's order, asked of a copy of the policy."""
    if not pending:
        return []
    try:
        policy = copy.deepcopy(planner.queue)
        ordered = list(policy.order(pending, _context(planner, pending)))
        if sorted(map(id, ordered)) == sorted(map(id, pending)):
            return ordered
    except Exception:  # a policy that cannot order this view: priority, then arrival
        pass
    return sorted(pending, key=priority_fifo_key)


def _context(planner: Planner, pending: list[Gang]) -> QueueContext:
    now = planner.clock()
    return QueueContext(
        now,
        planner.state,
        list(planner._running.values()),
        attained_gpu_s=planner.attained(now),
        pending=pending,
    )


def _finite(value: float) -> float | None:
    return round(value, 3) if math.isfinite(value) else None


@dataclass
class QueueMetrics:
    """What ``/metrics`` exports per queue and tenant, read in one pass under the lock."""

    pending_gangs: dict[tuple[str, str, str], int]
    """(queue, tenant, reason) -> pending gangs."""
    pending_gpus: dict[tuple[str, str, str], float]
    in_use_gpus: dict[tuple[str, str], float]
    """(queue, tenant) -> GPUs held by reserved and bound plans."""
    tenants: list[dict[str, Any]]
    quotas: list[dict[str, Any]]
    reservations: int
    oldest_reservation_s: float


def queue_metrics(planner: Planner) -> QueueMetrics:
    """The per-queue and per-tenant series of ``/metrics`` (no queue order: no policy call
    but the fair-share entitlement)."""
    with planner.lock:
        views = gang_views(planner, ordered=False)
        pending_gangs: dict[tuple[str, str, str], int] = {}
        pending_gpus: dict[tuple[str, str, str], float] = {}
        in_use: dict[tuple[str, str], float] = {}
        for view in views:
            if view.phase == "pending":
                label = (view.queue, view.tenant, view.code or UNTRIED)
                pending_gangs[label] = pending_gangs.get(label, 0) + 1
                pending_gpus[label] = pending_gpus.get(label, 0.0) + view.gpus_wanted
            if view.gpus_held:
                pair = (view.queue, view.tenant)
                in_use[pair] = in_use.get(pair, 0.0) + view.gpus_held
        now = planner.clock()
        ages = [
            now - h.reserved_at_s
            for h in planner.state.holdings.values()
            if h.phase is HoldingPhase.RESERVED  # pods bound by others are never reserved
        ]
        return QueueMetrics(
            pending_gangs,
            pending_gpus,
            in_use,
            tenant_usage(planner, views),
            queue_quotas(planner, views),
            len(ages),
            max(ages, default=0.0),
        )
