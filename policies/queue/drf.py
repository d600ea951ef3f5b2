"""Dominant resource fairness across tenants (Ghodsi et al., NSDI '11), over GPU, cpu, memory.

A tenant's dominant share is its largest fraction of any cluster resource. The order is DRF's
progressive filling: the tenant with the smallest weighted dominant share goes next, its next
gang counts as started, and so on, so one cycle interleaves tenants fairly. The entitlement
is ``weight / sum of active weights`` (active: tenants with running or pending gangs).

Fair and work conserving: the order puts every gang that keeps its tenant within its share
before every gang that borrows, and a borrower is refused only while another tenant's entitled
gang has not had its turn yet. So no tenant grows past its share at the expense of an entitled
gang that could start, and at the end of a cycle no gang waits while room that fits it is free
(it used to: a borrower refused for an entitled gang later in the same cycle was not tried
again until the next event, with thousands of GPUs idle). Outside a cycle it ordered, admission
is :mod:`policies.queue.fair_gate`'s general rule.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence

from phalanx.policies.queue.base import OrderedQueuePolicy, priority_fifo_key
from phalanx.policies.queue.drf_book import (
    ZERO,
    CycleBook,
    DemandCache,
    RunningUsage,
    share_function,
)
from phalanx.policies.queue.fair_gate import entitled_waiter
from phalanx.policies.resources import Resources, cluster_capacity, gang_demand, usage_by
from phalanx.scheduler.gang import Gang
from phalanx.scheduler.interfaces import QueueContext

SHARE_TOLERANCE = 1e-9
"""Shares are ratios of integers; this absorbs float rounding in the comparisons."""


def tenant_of(gang: Gang) -> str:
    return gang.tenant


class DrfPolicy(OrderedQueuePolicy):
    name = "drf"
    description = "Dominant resource fairness across tenants (GPU, cpu, memory), with weights."

    def __init__(self, weights: Mapping[str, float] | None = None, strict: bool = False) -> None:
        super().__init__(strict)
        self.weights = dict(weights or {})
        self._cycle: CycleBook | None = None
        self._running = RunningUsage(tenant_of)
        self._demand = DemandCache()
        for tenant, w in self.weights.items():
            if not w > 0:
                raise ValueError(f"drf weight of tenant {tenant!r} must be positive, got {w}")

    def weight(self, tenant: str) -> float:
        return self.weights.get(tenant, 1.0)

    def entitlement(self, tenant: str, ctx: QueueContext) -> float:
        """Fair dominant share of ``tenant`` among the tenants with work."""
        return self.weight(tenant) / self._active_weight(ctx, tenant)

    def _active_weight(self, ctx: QueueContext, tenant: str) -> float:
        active = {r.gang.tenant for r in ctx.running} | {g.tenant for g in ctx.pending}
        active.add(tenant)
        return sum(self.weight(t) for t in active)

    def order(self, pending: Sequence[Gang], ctx: QueueContext) -> list[Gang]:
        """Progressive filling, stably split in two: first every gang that keeps its tenant
        within its fair share (in filling order), then the rest (in filling order). Every
        entitled gang so has its turn before any gang that borrows, which is what lets
        :meth:`admit` stay work conserving: by the time a borrower is tried, no entitled gang
        is left untried. (Vectors are plain tuples here: this loop runs for every waiting gang
        in every cycle.)"""
        capacity = cluster_capacity(ctx.state.compiled)
        share = share_function(capacity)
        demand = self._demand.prune(pending)
        usage = {t: r.as_tuple() for t, r in self._running.update(ctx.running).items()}
        queues: dict[str, list[Gang]] = {}
        for gang in sorted(pending, key=priority_fifo_key, reverse=True):
            queues.setdefault(gang.tenant, []).append(gang)
        active = {r.gang.tenant for r in ctx.running} | set(queues)
        total_weight = sum(self.weight(t) for t in active)
        heap = [(share(usage.get(t, ZERO)) / self.weight(t), t) for t in queues]
        heapq.heapify(heap)
        entitled: list[Gang] = []
        borrowing: list[Gang] = []
        over: set[str] = set()
        while heap:
            _, tenant = heapq.heappop(heap)
            weight = self.weight(tenant)
            fair = weight / total_weight + SHARE_TOLERANCE
            waiting = queues[tenant]
            used = usage.get(tenant, ZERO)
            while waiting:  # the same tenant goes on while it stays the least served
                gang = waiting.pop()
                d = demand(gang)
                used = (used[0] + d[0], used[1] + d[1], used[2] + d[2])
                mine = share(used)
                if tenant not in over and mine <= fair:
                    entitled.append(gang)
                else:
                    over.add(tenant)  # FIFO inside a tenant: its later gangs borrow too
                    borrowing.append(gang)
                if heap and (mine / weight, tenant) > heap[0]:
                    break
            usage[tenant] = used
            if waiting:
                heapq.heappush(heap, (share(used) / weight, tenant))
        self._cycle = CycleBook(ctx, share, total_weight, entitled, self._running, demand)
        return [*entitled, *borrowing]

    def admit(self, gang: Gang, ctx: QueueContext) -> str | None:
        """Within its fair share a gang always may start. Beyond it (borrowing), only while no
        other tenant's entitled gang is still to be tried this cycle; the order tries those
        first, so inside a cycle a borrower waits only for lack of room (work conserving).
        Called outside a cycle this policy ordered, the rule is the general one: no borrowing
        while another tenant has any waiting gang that fits within its share."""
        book = self._cycle
        if book is None or book.ctx is not ctx:
            return self._admit_alone(gang, ctx)
        book.tried(gang)
        used, d = book.usage(gang.tenant), book.demand(gang)
        share = book.share((used[0] + d[0], used[1] + d[1], used[2] + d[2]))
        mine = self.weight(gang.tenant) / book.total_weight
        if share <= mine + SHARE_TOLERANCE:
            return None
        waiter = book.untried_tenant(exclude=gang.tenant)
        if waiter is None:
            return None
        return _refusal(gang.tenant, share, mine, waiter)

    def _admit_alone(self, gang: Gang, ctx: QueueContext) -> str | None:
        capacity = cluster_capacity(ctx.state.compiled)
        usage = usage_by(ctx.running, tenant_of)
        after = usage.get(gang.tenant, Resources()) + gang_demand(gang)
        share = after.dominant_share(capacity)
        total_weight = self._active_weight(ctx, gang.tenant)
        mine = self.weight(gang.tenant) / total_weight
        if share <= mine + SHARE_TOLERANCE:
            return None

        def within(tenant: str, used: Resources) -> bool:
            fair = self.weight(tenant) / total_weight
            return used.dominant_share(capacity) <= fair + SHARE_TOLERANCE

        waiter = entitled_waiter(ctx, tenant_of, usage, within, exclude=gang.tenant)
        if waiter is None:
            return None
        return _refusal(gang.tenant, share, mine, waiter)


def _refusal(tenant: str, share: float, fair: float, waiter: str) -> str:
    return (
        f"drf: tenant {tenant!r} would hold a {share:.1%} dominant share, above its "
        f"fair {fair:.1%}, while tenant {waiter!r} waits below its share"
    )
