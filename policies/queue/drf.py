"""Dominant resource fairness across tenants (Ghodsi et al., NSDI '11), over GPU, cpu, memory.

A tenant's dominant share is its largest fraction of any cluster resource. The order is DRF's
progressive filling: the tenant with the smallest weighted dominant share goes next, its next
gang counts as started, and so on, so one cycle interleaves tenants fairly. Admission applies
:mod:`policies.queue.fair_gate` with entitlement ``weight / sum of active weights`` (active:
tenants with running or pending gangs), so no tenant grows past its share while another is
waiting below its own.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence

from phalanx.policies.queue.base import OrderedQueuePolicy, priority_fifo_key
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
        capacity = cluster_capacity(ctx.state.compiled)
        usage = usage_by(ctx.running, tenant_of)
        queues: dict[str, list[Gang]] = {}
        for gang in sorted(pending, key=priority_fifo_key, reverse=True):
            queues.setdefault(gang.tenant, []).append(gang)
        heap = [
            (usage.get(t, Resources()).dominant_share(capacity) / self.weight(t), t) for t in queues
        ]
        heapq.heapify(heap)
        ordered: list[Gang] = []
        while heap:
            _, tenant = heapq.heappop(heap)
            gang = queues[tenant].pop()
            ordered.append(gang)
            usage[tenant] = usage.get(tenant, Resources()) + gang_demand(gang)
            if queues[tenant]:
                share = usage[tenant].dominant_share(capacity) / self.weight(tenant)
                heapq.heappush(heap, (share, tenant))
        return ordered

    def admit(self, gang: Gang, ctx: QueueContext) -> str | None:
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
        return (
            f"drf: tenant {gang.tenant!r} would hold a {share:.1%} dominant share, above its "
            f"fair {mine:.1%}, while tenant {waiter!r} waits below its share"
        )
