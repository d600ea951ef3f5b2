"""DRF's bookkeeping: tenant usage kept up to date by difference, and one cycle's admissions.

Why a file of its own: DRF used to sum every running gang's placement for the order and again
for every gang it admitted, and to scan every pending gang for an entitled waiter per
admission. That made a contended run 12x slower than FIFO and an idle one 3-6x. Here the
per-tenant usage is carried from cycle to cycle and only the gangs that started or left since
are counted (resource amounts are whole milli-GPUs, millicores and MiB, so adding and
subtracting them is exact), and a cycle's admissions share one book, so each costs O(1).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from phalanx.policies.resources import Resources, gang_demand, placement_usage
from phalanx.scheduler.gang import Gang
from phalanx.scheduler.interfaces import QueueContext, RunningGang
from phalanx.scheduler.placement import Placement


class RunningUsage:
    """Usage of the running gangs per group (tenant), updated by difference: a gang is
    counted when first seen with a placement and taken off when it is gone or re-placed.
    The placement object is held, so an identity check cannot be fooled by a reused id."""

    def __init__(self, group_of: Callable[[Gang], str]) -> None:
        self._group_of = group_of
        self._held: dict[str, tuple[str, Placement, Resources]] = {}
        self._totals: dict[str, Resources] = {}

    def update(self, running: Sequence[RunningGang]) -> dict[str, Resources]:
        """Totals per group for exactly ``running`` (the returned dict is the tracker's own:
        copy it before changing it)."""
        for r in running:
            held = self._held.get(r.gang.name)
            if held is not None and held[1] is r.placement:
                continue
            if held is not None:
                self._take(r.gang.name)
            group = self._group_of(r.gang)
            used = placement_usage(r.placement)
            self._held[r.gang.name] = (group, r.placement, used)
            self._totals[group] = self._totals.get(group, Resources()) + used
        if len(self._held) != len(running):
            present = {r.gang.name for r in running}
            for name in [n for n in self._held if n not in present]:
                self._take(name)
        return self._totals

    def _take(self, name: str) -> None:
        group, _, used = self._held.pop(name)
        self._totals[group] = self._totals[group] - used


Vector = tuple[float, float, float]
"""(GPU milli, cpu milli, memory MiB), as :meth:`Resources.as_tuple` gives it."""
ZERO: Vector = (0.0, 0.0, 0.0)


def share_function(capacity: Resources) -> Callable[[Vector], float]:
    """``Resources.dominant_share`` against ``capacity`` for plain tuples (the same value):
    the largest fraction of any resource the cluster has."""
    inverse = [1.0 / c if c > 0 else 0.0 for c in capacity.as_tuple()]
    g, c, m = inverse

    def share(used: Vector) -> float:
        return max(used[0] * g, used[1] * c, used[2] * m)

    return share


class DemandCache:
    """Each waiting gang's demand as a tuple, computed once while it waits (the simulator and
    the extender hand the same gang objects to every cycle; a new object is computed again)."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[Gang, Vector]] = {}

    def prune(self, pending: Sequence[Gang]) -> Callable[[Gang], Vector]:
        """Forget gangs that no longer wait (when the cache has grown well past the queue) and
        return the lookup."""
        if len(self._known) > 2 * len(pending) + 1024:
            waiting = {g.name for g in pending}
            self._known = {n: v for n, v in self._known.items() if n in waiting}
        return self.of

    def of(self, gang: Gang) -> Vector:
        known = self._known.get(gang.name)
        if known is not None and known[0] is gang:
            return known[1]
        vector = gang_demand(gang).as_tuple()
        self._known[gang.name] = (gang, vector)
        return vector


class CycleBook:
    """What one cycle's admissions share: the share function, the weights of the active
    tenants, live usage per tenant (updated as the cycle starts gangs) and the entitled gangs
    not yet tried, per tenant."""

    def __init__(
        self,
        ctx: QueueContext,
        share: Callable[[Vector], float],
        total_weight: float,
        entitled: list[Gang],
        running: RunningUsage,
        demand: Callable[[Gang], Vector],
    ) -> None:
        self.ctx = ctx
        self.share = share
        self.demand = demand
        self.total_weight = total_weight
        self._running = running
        self._untried = {g.name: g.tenant for g in entitled}
        self._untried_by_tenant = Counter(self._untried.values())
        self._usage: dict[str, Vector] = {}
        self._seen: tuple[int, object] = (-1, None)
        """(length, last item) of ``ctx.running`` when usage was last brought up to date; the
        item itself, not its id, so that a freed object's id cannot be mistaken for it."""

    def tried(self, gang: Gang) -> None:
        tenant = self._untried.pop(gang.name, None)
        if tenant is not None:
            self._untried_by_tenant[tenant] -= 1

    def untried_tenant(self, exclude: str) -> str | None:
        """A tenant other than ``exclude`` with an entitled gang that has not had its turn."""
        if len(self._untried) == self._untried_by_tenant[exclude]:
            return None
        for tenant, count in self._untried_by_tenant.items():
            if count > 0 and tenant != exclude:
                return tenant
        return None

    def usage(self, tenant: str) -> Vector:
        """Live usage of ``tenant``. The cycle only appends the gangs it starts to
        ``ctx.running`` (a preemption rewrites it), so a new last item one past the old one
        is added; anything else is counted again."""
        running = self.ctx.running
        seen_len, seen_last = self._seen
        if seen_len != len(running) or (running and running[-1] is not seen_last):
            grown = seen_len >= 0 and len(running) == seen_len + 1
            if grown and seen_len > 0:
                grown = running[-2] is seen_last
            if grown:
                added = running[-1].gang
                before, d = self._usage.get(added.tenant, ZERO), self.demand(added)
                self._usage[added.tenant] = (before[0] + d[0], before[1] + d[1], before[2] + d[2])
            else:
                totals = self._running.update(running)
                self._usage = {t: r.as_tuple() for t, r in totals.items()}
            self._seen = (len(running), running[-1] if running else None)
        return self._usage.get(tenant, ZERO)
