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
from collections import Counter
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
        self._cycle: _CycleBook | None = None
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
        is left untried."""
        capacity = cluster_capacity(ctx.state.compiled)
        usage = usage_by(ctx.running, tenant_of)
        queues: dict[str, list[Gang]] = {}
        for gang in sorted(pending, key=priority_fifo_key, reverse=True):
            queues.setdefault(gang.tenant, []).append(gang)
        active = {r.gang.tenant for r in ctx.running} | set(queues)
        total_weight = sum(self.weight(t) for t in active)
        heap = [
            (usage.get(t, Resources()).dominant_share(capacity) / self.weight(t), t) for t in queues
        ]
        heapq.heapify(heap)
        entitled: list[Gang] = []
        borrowing: list[Gang] = []
        over: set[str] = set()
        while heap:
            _, tenant = heapq.heappop(heap)
            gang = queues[tenant].pop()
            usage[tenant] = usage.get(tenant, Resources()) + gang_demand(gang)
            fair = self.weight(tenant) / total_weight
            if (
                tenant not in over
                and usage[tenant].dominant_share(capacity) <= fair + SHARE_TOLERANCE
            ):
                entitled.append(gang)
            else:
                over.add(tenant)  # FIFO inside a tenant: its later gangs borrow too
                borrowing.append(gang)
            if queues[tenant]:
                share = usage[tenant].dominant_share(capacity) / self.weight(tenant)
                heapq.heappush(heap, (share, tenant))
        self._cycle = _CycleBook(ctx, capacity, total_weight, entitled)
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
        share = (book.usage(gang.tenant) + gang_demand(gang)).dominant_share(book.capacity)
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


class _CycleBook:
    """What one cycle's admissions share, so that each costs O(1) instead of a pass over the
    running and pending gangs (the quadratic cost that made DRF 12x slower than FIFO under
    contention): the capacity, the weights of the active tenants, live usage per tenant
    (updated as the cycle starts gangs) and the entitled gangs not yet tried, per tenant."""

    def __init__(
        self, ctx: QueueContext, capacity: Resources, total_weight: float, entitled: list[Gang]
    ) -> None:
        self.ctx = ctx
        self.capacity = capacity
        self.total_weight = total_weight
        self._untried = {g.name: g.tenant for g in entitled}
        self._untried_by_tenant = Counter(self._untried.values())
        self._usage: dict[str, Resources] = {}
        self._seen: tuple[int, object] = (-1, None)
        """(length, last item) of ``ctx.running`` when usage was last brought up to date; the
        item itself, not its id, so that a freed object's id cannot be mistaken for it."""

    def tried(self, gang: Gang) -> None:
        tenant = self._untried.pop(gang.name, None)
        if tenant is not None:
            self._untried_by_tenant[tenant] -= 1

    def untried_tenant(self, exclude: str) -> str | None:
        for tenant, count in self._untried_by_tenant.items():
            if count > 0 and tenant != exclude:
                return tenant
        return None

    def usage(self, tenant: str) -> Resources:
        """Live usage of ``tenant``. The cycle only appends the gangs it starts to
        ``ctx.running`` (a preemption rewrites it), so a new last item one past the old one
        is added; anything else is counted again from scratch."""
        running = self.ctx.running
        seen_len, seen_last = self._seen
        if seen_len != len(running) or (running and running[-1] is not seen_last):
            grown = seen_len >= 0 and len(running) == seen_len + 1
            if grown and seen_len > 0:
                grown = running[-2] is seen_last
            if grown:
                added = running[-1].gang
                self._usage[added.tenant] = self._usage.get(
                    added.tenant, Resources()
                ) + gang_demand(added)
            else:
                self._usage = usage_by(running, tenant_of)
            self._seen = (len(running), running[-1] if running else None)
        return self._usage.get(tenant, Resources())
